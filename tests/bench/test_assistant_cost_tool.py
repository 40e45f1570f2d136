"""tools/assistant_cost.py, the per-part timing docs/benchmarks.md quotes: every part runs, and runs what it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools import load_tool
from tests.train.conftest import spec_dict, write_spec_file


def _tool():
    return load_tool("assistant_cost")


def test_parts_run_what_they_name_and_are_timed(tmp_path: Path) -> None:
    from tasgen.spec import load_spec

    loaded = load_spec(write_spec_file(tmp_path, spec_dict(tmp_path, data={"batch_size": 4})))
    steps, system = _tool().part_steps(loaded)
    assert list(steps) == [
        "teacher forward", "student forward+backward", "bridge forward+backward",
        "global stages+head forward+backward", "assistant forward+backward", "system+objective forward+backward",
    ]
    reached: set[str] = set()
    for name, p in system.named_parameters():
        if p.requires_grad:
            p.register_hook(lambda g, name=name: reached.add(name))
    touched = {}
    for part, fn in steps.items():
        reached.clear()
        fn()
        touched[part] = set(reached)
        assert all(p.grad is None for p in system.parameters()), part  # each round starts clean
    bridge = {n for n, _ in system.named_parameters() if n.startswith("assistant.bridge.")}
    student = {n for n, p in system.named_parameters() if n.startswith("student.") and p.requires_grad}
    assert touched["teacher forward"] == set()
    assert touched["student forward+backward"] == student
    assert touched["bridge forward+backward"] == bridge
    assert touched["global stages+head forward+backward"] == set()  # the frozen teacher's stages: input gradients only
    assert touched["assistant forward+backward"] == bridge
    assert bridge | student <= touched["system+objective forward+backward"]
    seconds = _tool().part_seconds(loaded, rounds=2, warmup=0)
    assert set(seconds) == set(steps) and all(s > 0 for s in seconds.values())


def test_a_method_without_an_assistant_is_refused(tmp_path: Path) -> None:
    from tasgen.spec import load_spec

    loaded = load_spec(write_spec_file(tmp_path, spec_dict(tmp_path)), ["distill.method=kd"])
    with pytest.raises(SystemExit, match="no assistant"):
        _tool().part_steps(loaded)
