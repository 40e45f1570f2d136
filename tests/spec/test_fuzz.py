"""Mutated specs either load or raise SpecError: never any other exception."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasgen.spec import LoadedSpec, SpecError, load_spec

VALID: dict[str, Any] = {
    "name": "demo",
    "teacher": {"timm": "resnet18", "kwargs": {"drop_rate": 0.1}},
    "student": {
        "stem": {"kind": "conv", "channels": 16, "stride": 2},
        "stages": [
            {"mixer": "conv", "channels": 16, "depth": 1},
            {"mixer": "attention", "channels": 32, "depth": 1, "stride": 2, "heads": 2},
        ],
    },
    "assistant": {"split": "auto", "bridge": {"heads": "auto"}},
    "distill": {"method": "tas", "pairs": {"teacher_student": {"enabled": True}}},
    "data": {"dataset": "digits", "image_size": 32, "batch_size": 32},
    "train": {"epochs": 2, "optimizer": {"name": "adamw", "lr": 0.001}, "compile": False},
}

# Real key names reach deeper validation than random text does.
KEYS = st.sampled_from(
    [
        "name",
        "extends",
        "teacher",
        "student",
        "timm",
        "checkpoint",
        "stem",
        "stages",
        "heads",
        "data",
        "root",
        "train",
        "epochs",
        "split",
        "kwargs",
        "method",
        "channels",
        "mixer",
    ]
) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["auto", "conv", "attention", "resnet18", "cifar10", ".", "/", "spec.yaml", "tas"]
    )
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)


def _containers(node: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every mapping and list in ``node``."""
    found = [path] if isinstance(node, dict | list) else []
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in items:
        found += _containers(child, (*path, key))
    return found


def _at(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    doc: Any = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        containers = _containers(doc)
        if not containers:
            return draw(VALUES)  # the whole document was replaced by a scalar
        target = _at(doc, draw(st.sampled_from(containers)))
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        op = draw(st.sampled_from(["drop", "insert", "replace", "retype"]))
        if op == "insert" or not keys:
            if isinstance(target, dict):
                target[draw(KEYS)] = draw(VALUES)
            else:
                target.append(draw(VALUES))
            continue
        key = draw(st.sampled_from(keys))
        if op == "drop":
            del target[key]
        elif op == "replace":
            target[key] = draw(VALUES)
        else:  # same value, other type: "3" for 3, [x] for x, {x: x} ...
            value = target[key]
            target[key] = draw(
                st.sampled_from([str(value), [value], {"value": value}, None, 1.5, True])
            )
    return doc


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _load(path: Path, overrides: tuple[str, ...] = ()) -> LoadedSpec | None:
    try:
        return load_spec(path, overrides)
    except SpecError as err:
        assert err.problems and all(str(p).count(":") >= 3 for p in err.problems)
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=mutated_specs())
def test_mutated_specs_load_or_raise_spec_error(fuzz_dir: Path, doc: Any) -> None:
    path = fuzz_dir / "spec.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    _load(path)


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=60))
def test_random_text_and_overrides(fuzz_dir: Path, text: str) -> None:
    path = fuzz_dir / "text.yaml"
    path.write_text(text)
    _load(path)
    path.write_text(yaml.safe_dump(VALID))
    _load(path, (text,))
