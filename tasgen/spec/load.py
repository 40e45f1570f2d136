"""Loading a spec: safe YAML, `extends:` bases, `--set` overrides, located errors.

spec.yaml (+ its bases) --read & merge--> raw dict + source sites
         --set overrides--> --validate--> LoadedSpec(spec, raw, sites)
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ._paths import PathError, parse_path
from ._problems import Loc, clean_path, dotted, locate, validation_problems
from ._timm_names import unknown_timm_model
from ._yaml import Site, YamlProblem, read_yaml
from .errors import Location, Problem, SpecError
from .schema import Spec

OVERRIDE_FILE = "--set"
"""The `file` of a problem in an override: line N is the N-th ``--set``, column the character in it."""

_MODEL_ROLES = ("teacher", "student")


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with the source location of every value.

    Attributes:
        spec: The validated spec.
        path: The spec file, absolute.
        raw: The merged plain data that was validated (bases, overrides and the
            defaulted name applied; checkpoint paths absolute).
    """

    spec: Spec
    path: Path
    raw: dict[str, Any]
    _root: Site = field(repr=False, compare=False)

    def locate(self, loc: Sequence[str | int]) -> Location:
        """The source of a pydantic-style ``loc``, or of its nearest existing parent.

        Discriminator tags (``timm-model``, ``backbone``) and union labels are skipped.
        """
        return locate(clean_path(tuple(loc), self._root)[0], self._root)

    def error(self, loc: Sequence[str | int], message: str) -> SpecError:
        """A `SpecError` located at the spec node ``loc``, for later stages to raise.

        Example:
            ``raise loaded.error(("teacher", "timm"), "cannot build the model: ...")``
        """
        path = clean_path(tuple(loc), self._root)[0]
        return SpecError([Problem.at(locate(path, self._root), dotted(path), message)])

    def resolved(self) -> dict[str, Any]:
        """The full spec with every default filled in, JSON-compatible."""
        return self.spec.model_dump(mode="json")


def load_spec(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> LoadedSpec:
    """Read, merge and validate a spec file.

    Args:
        path: The YAML spec. Its ``extends:`` base (relative to the file) is merged
            under it, recursively.
        overrides: ``a.b.c=value`` strings applied in order after merging; each value
            is read as YAML (``train.epochs=5``, ``teacher={timm: resnet18}``).

    Returns:
        The validated spec with the source location of every value.

    Raises:
        SpecError: listing every problem found, each at file:line:column.
    """
    file = Path(path).expanduser().resolve()
    data, root = _read_chain(file, [], None)
    problems: list[Problem] = []

    # A spec's default name is its own file name: it is not inherited from a base,
    # so that variants of one base never share a run folder.
    default_name = Site(Location(_display(file)))
    if "name" not in data:
        data["name"] = file.stem
        root.children["name"] = default_name

    for number, text in enumerate(overrides, start=1):
        problems.extend(_apply_override(data, root, number, text))
    name_defaulted = root.children.get("name") is default_name

    problems.extend(_check_models(data, root))
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        problems.extend(validation_problems(err, root, name_defaulted=name_defaulted))
    if problems:
        raise SpecError(
            sorted(problems, key=lambda p: (p.file == OVERRIDE_FILE, p.file, p.line, p.column))
        )
    return LoadedSpec(spec=spec, path=file, raw=data, _root=root)


# ------------------------------------------------------------------- files
def _display(file: Path) -> str:
    """How a file is named in messages: relative to the working folder when inside it."""
    try:
        return str(file.relative_to(Path.cwd()))
    except ValueError:
        return str(file)


def _read_chain(
    file: Path, chain: list[Path], referrer: Problem | None
) -> tuple[dict[str, Any], Site]:
    """Read ``file`` and, recursively, the bases it extends; merge them.

    ``referrer`` is a problem template located at the ``extends:`` that named ``file``.
    """
    shown = _display(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        if isinstance(err, FileNotFoundError):
            reason = "not found"
        elif isinstance(err, IsADirectoryError):
            reason = "is a folder"
        else:
            reason = f"cannot be read ({err})"
        # A missing base is reported at the `extends:` that names it.
        problem = _reword(referrer, f"base spec {reason}: {file}") or Problem(
            shown, 1, 1, "", f"spec file {reason}"
        )
        raise SpecError([problem]) from None
    try:
        data, site = read_yaml(text, shown)
    except YamlProblem as err:
        raise SpecError(err.problems) from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        message = f"a spec must be a mapping of keys (name, teacher, student, ...), got {got}"
        raise SpecError(
            [Problem.at(site.value if data is not None else Location(shown), "", message)]
        )
    site.value = Location(shown)  # the whole file starts at 1:1, whatever comments precede
    _resolve_checkpoints(data, file.parent)

    base = data.get("extends")
    if base is None:
        return data, site
    where = site.children["extends"]
    if not isinstance(base, str) or not base:
        raise SpecError(
            [Problem.at(where.value, "extends", "extends must be the path of a base spec file")]
        )
    target = (file.parent / Path(base).expanduser()).resolve()
    at_extends = Problem.at(where.value, "extends", "")
    if target in (*chain, file):
        cycle = " -> ".join(_display(f) for f in (*chain, file, target))
        raise SpecError([_reword(at_extends, f"extends cycle: {cycle}")])
    base_data, base_site = _read_chain(target, [*chain, file], at_extends)
    base_data.pop("name", None)
    base_site.children.pop("name", None)
    merged, merged_site = _merge(base_data, base_site, data, site)
    merged["extends"] = str(target)
    return merged, merged_site


def _reword(template: Problem | None, message: str) -> Problem | None:
    if template is None:
        return None
    return Problem(template.file, template.line, template.column, template.path, message)


def _merge(base: Any, base_site: Site, over: Any, over_site: Site) -> tuple[Any, Site]:
    """Deep-merge ``over`` onto ``base``: mappings merge, everything else replaces."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over, over_site
    merged = dict(base)
    site = Site(over_site.value, over_site.key, over_site.block, dict(base_site.children))
    for key, value in over.items():
        if key in base:
            merged[key], site.children[key] = _merge(
                base[key], base_site.children[key], value, over_site.children[key]
            )
        else:
            merged[key], site.children[key] = value, over_site.children[key]
    return merged, site


def _resolve_checkpoints(data: dict[str, Any], folder: Path) -> None:
    """Make relative ``checkpoint:`` paths absolute against the folder that wrote them."""
    for role in _MODEL_ROLES:
        model = data.get(role)
        if (
            isinstance(model, dict)
            and isinstance(model.get("checkpoint"), str)
            and model["checkpoint"]
        ):
            model["checkpoint"] = str((folder / Path(model["checkpoint"]).expanduser()).resolve())


# --------------------------------------------------------------- overrides
def _apply_override(data: dict[str, Any], root: Site, number: int, text: str) -> list[Problem]:
    """Apply one ``a.b.c=value``; return its problems (none when it applied)."""
    key, sep, value_text = text.partition("=")
    key = key.strip()
    at = Location(OVERRIDE_FILE, number, 1)
    if not sep:
        return [
            Problem.at(
                at, "", f"malformed override {text!r}: expected KEY=VALUE, e.g. train.epochs=5"
            )
        ]
    try:
        path = parse_path(key)
    except PathError as err:
        return [Problem.at(at, key, str(err))]
    if path == ("extends",):
        return [Problem.at(at, key, "extends cannot be overridden; edit the spec file")]

    value_column = len(text) - len(value_text) + 1
    try:
        value, _ = read_yaml(value_text, OVERRIDE_FILE)
    except YamlProblem as err:
        return [
            Problem(
                OVERRIDE_FILE,
                number,
                value_column + p.column - 1 if p.line == 1 else value_column,
                key,
                p.message,
            )
            for p in err.problems
        ]
    value_at = Location(OVERRIDE_FILE, number, value_column)
    node: Any = data
    site = root
    for depth, item in enumerate(path[:-1]):
        child = _child(node, item)
        if child is _ABSENT:
            if isinstance(item, int):
                return [_out_of_range(at, key, path[:depth], node)]
            if not isinstance(node, dict):
                return [_cannot_set(at, key, path[:depth], node)]
            node[item] = child = {}
            site.children[item] = Site(value=value_at, key=at)
        if not isinstance(child, dict | list):
            return [_cannot_set(at, key, path[: depth + 1], child)]
        node, site = child, site.children[item]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            return [_out_of_range(at, key, path[:-1], node)]
    elif not isinstance(node, dict):
        return [_cannot_set(at, key, path[:-1], node)]
    node[last] = copy.deepcopy(value)
    site.children[last] = Site.uniform(value, value_at)
    # Checkpoints given on the command line are relative to the working folder (those
    # from files are absolute already, so this leaves them alone).
    _resolve_checkpoints(data, Path.cwd())
    return []


_ABSENT = object()


def _child(node: Any, item: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(item, _ABSENT)
    if isinstance(node, list) and isinstance(item, int) and item < len(node):
        return node[item]
    return _ABSENT


def _cannot_set(at: Location, key: str, path: Loc, node: Any) -> Problem:
    return Problem.at(
        at, key, f"cannot set inside {dotted(path)}: it is {node!r}, not a mapping or list"
    )


def _out_of_range(at: Location, key: str, path: Loc, node: Any) -> Problem:
    if not isinstance(node, list):
        return _cannot_set(at, key, path, node)
    count = f"{len(node)} item" if len(node) == 1 else f"{len(node)} items"
    return Problem.at(
        at, key, f"no list item {key.split('.')[len(path)]}: {dotted(path)} has {count}"
    )


# ------------------------------------------------------------ model checks
def _check_models(data: dict[str, Any], root: Site) -> list[Problem]:
    """What the schema alone cannot see: timm names and checkpoint files."""
    problems = []
    for role in _MODEL_ROLES:
        model = data.get(role)
        if not isinstance(model, dict):
            continue
        name = model.get("timm")
        if isinstance(name, str) and name and (message := unknown_timm_model(name)):
            problems.append(Problem.at(locate((role, "timm"), root), f"{role}.timm", message))
        checkpoint = model.get("checkpoint")
        if isinstance(checkpoint, str):
            checkpoint_path = Path(checkpoint)
            message = None
            if not checkpoint:
                message = "checkpoint must be the path of a weights file (got an empty string)"
            elif not checkpoint_path.exists():
                message = f"checkpoint file not found: {checkpoint_path}"
            elif not checkpoint_path.is_file():
                message = f"checkpoint is not a file: {checkpoint_path}"
            if message:
                problems.append(
                    Problem.at(locate((role, "checkpoint"), root), f"{role}.checkpoint", message)
                )
    return problems
