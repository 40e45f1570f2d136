"""Loading a spec: safe YAML, `extends:` bases, `--set` overrides, located errors.

spec.yaml (+ its bases) --read & merge--> raw dict + source sites
         --set overrides--> --validate--> LoadedSpec(spec, raw, sites)
"""

from __future__ import annotations

import copy
import errno
import os
import stat
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
from .home import expand_user
from .schema import Spec

OVERRIDE_FILE = "--set"
"""The `file` of a problem in an override: line N is the N-th ``--set``, column the character in it."""

_MODEL_ROLES = ("teacher", "student")

MAX_SPEC_BYTES = 1 << 20
"""A spec is a short YAML file; anything larger (or endless, like /dev/zero) is refused unread."""


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with the source location of every value.

    Attributes:
        spec: The validated spec.
        path: The spec file, absolute.
        raw: The merged plain data that was validated (bases, overrides and the
            defaulted name applied; every path written in it absolute, see `PATH_FIELDS`).
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
            under it, recursively. Every relative path written in a file is relative
            to that file's folder; one in an override, to the working folder.
        overrides: ``a.b.c=value`` strings applied in order after merging; each value
            is read as YAML (``train.epochs=5``, ``teacher={timm: resnet18}``).

    Returns:
        The validated spec with the source location of every value.

    Raises:
        SpecError: listing every problem found, each at file:line:column.
    """
    file = _resolve(expand_user(path), None)
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
    problems.extend(_check_data(data, root))
    return _validated(file, data, root, problems, name_defaulted)


def load_run_spec(path: str | os.PathLike[str]) -> LoadedSpec:
    """Read a run folder's ``spec.yaml`` with the bounds and validation of `load_spec`.

    The file was written resolved (bases merged, defaults filled in), so ``extends:``
    is not followed, and files the run no longer needs (model checkpoints) are not
    checked; a hand-edited or damaged file gets located errors like any spec.

    Raises:
        SpecError: listing every problem found, each at file:line:column.
    """
    file = _resolve(expand_user(path), None)
    data, root = _read_file(file, None)
    data.pop("extends", None)
    root.children.pop("extends", None)
    problems = [p for p in _check_models(data, root) if not p.path.endswith(".checkpoint")]
    return _validated(file, data, root, problems, name_defaulted=False)


def load_eval_data(
    run_spec: str | os.PathLike[str], data_file: str | os.PathLike[str] | None = None, overrides: Sequence[str] = ()
) -> LoadedSpec:
    """A run's spec with other evaluation data: its ``data`` section merged with another file's and ``data.*`` overrides.

    Args:
        run_spec: the run folder's ``spec.yaml``.
        data_file: a YAML file with a ``data:`` mapping (a whole spec, or just that
            section; ``extends:`` followed, paths relative to it) whose keys replace the
            run's, e.g. ``data: {dataset: imagefolder, root: other}`` keeps the run's
            image size.
        overrides: ``data.KEY=VALUE`` strings (paths relative to the working folder).

    Returns:
        The run's spec with the merged data; everything but ``data`` is the run's.

    Raises:
        SpecError: located problems; an override outside ``data.`` is one.
    """
    file = _resolve(expand_user(run_spec), None)
    data, root = _read_file(file, None)
    data.pop("extends", None)
    root.children.pop("extends", None)
    problems: list[Problem] = []
    if data_file is not None:
        other_file = _resolve(expand_user(data_file), None)
        other, other_site = _read_chain(other_file, [], None)
        section = other.get("data")
        if not isinstance(section, dict):
            raise SpecError([Problem.at(other_site.children["data"].value if "data" in other_site.children
                                        else Location(_display(other_file)), "data",
                                        "the evaluation data file needs a data: mapping (dataset, root, ...)")])
        base, base_site = data.get("data", {}), root.children.get("data", Site(Location(_display(file))))
        data["data"], root.children["data"] = _merge(base, base_site, section, other_site.children["data"])
    for number, text in enumerate(overrides, start=1):
        if not text.strip().startswith("data."):
            problems.append(Problem.at(Location(OVERRIDE_FILE, number, 1), text.partition("=")[0].strip(),
                                       "evaluation takes data.* overrides only (the models are the run's)"))
            continue
        problems.extend(_apply_override(data, root, number, text))
    problems.extend(_check_data(data, root))
    return _validated(file, data, root, problems, name_defaulted=False)


def _validated(
    file: Path, data: dict[str, Any], root: Site, problems: list[Problem], name_defaulted: bool
) -> LoadedSpec:
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
    data, site = _read_file(file, referrer)
    _resolve_paths(data, file.parent)

    base = data.get("extends")
    if base is None:
        return data, site
    where = site.children["extends"]
    if not isinstance(base, str) or not base:
        raise SpecError(
            [Problem.at(where.value, "extends", "extends must be the path of a base spec file")]
        )
    at_extends = Problem.at(where.value, "extends", "")
    target = _resolve(file.parent / expand_user(base), at_extends)
    if target in (*chain, file):
        cycle = " -> ".join(_display(f) for f in (*chain, file, target))
        raise SpecError([_reword(at_extends, f"extends cycle: {cycle}")])
    base_data, base_site = _read_chain(target, [*chain, file], at_extends)
    base_data.pop("name", None)
    base_site.children.pop("name", None)
    merged, merged_site = _merge(base_data, base_site, data, site)
    merged["extends"] = str(target)
    return merged, merged_site


def _resolve(path: Path, referrer: Problem | None) -> Path:
    """``path`` made absolute with its symlinks resolved; a symlink loop is a located problem."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop
        raise SpecError([_unreadable(path, "is a symlink loop", referrer)]) from None


def _unreadable(file: Path, reason: str, referrer: Problem | None) -> Problem:
    # A bad base is reported at the `extends:` that names it.
    return _reword(referrer, f"base spec {reason}: {file}") or Problem(
        _display(file), 1, 1, "", f"spec file {reason}"
    )


def _read_text(file: Path, referrer: Problem | None) -> str:
    """The text of a spec file: a regular file of at most `MAX_SPEC_BYTES` UTF-8 bytes."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below.
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        reasons = {errno.ENOENT: "not found", errno.EISDIR: "is a folder", errno.ELOOP: "is a symlink loop"}
        reason = reasons.get(err.errno or 0, f"cannot be read ({err.strerror or err})")
        raise SpecError([_unreadable(file, reason, referrer)]) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        reason = "is a folder" if stat.S_ISDIR(info.st_mode) else "is not a regular file (a device, pipe or socket)"
        raise SpecError([_unreadable(file, reason, referrer)])
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(MAX_SPEC_BYTES + 1)
        except OSError as err:
            raise SpecError([_unreadable(file, f"cannot be read ({err.strerror or err})", referrer)]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            [_unreadable(file, f"is larger than {MAX_SPEC_BYTES // 2**20} MiB (a spec is a short YAML file)", referrer)]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError([_unreadable(file, f"is not UTF-8 text (byte {err.start})", referrer)]) from None


def _read_file(file: Path, referrer: Problem | None) -> tuple[dict[str, Any], Site]:
    """One spec file's mapping and site tree (no bases merged)."""
    shown = _display(file)
    text = _read_text(file, referrer)
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
    return data, site


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


# Every path a spec holds, by its key path. ``local-dir:`` model folders and hfds's
# local dataset folders share their key with names that are not paths.
PATH_FIELDS: tuple[tuple[str, ...], ...] = (
    ("teacher", "checkpoint"), ("student", "checkpoint"), ("teacher", "timm"), ("student", "timm"),
    ("data", "root"), ("data", "name"), ("train", "output_dir"),
)
_LOCAL_DIR = "local-dir:"


def _resolve_paths(data: dict[str, Any], folder: Path, under: tuple[str | int, ...] = ()) -> None:
    """Make the relative paths of ``data`` absolute against ``folder`` (``~`` expanded).

    The one rule for paths: a path written in a spec file is relative to that file's
    folder; one given with ``--set`` is relative to the working folder (the caller
    passes the folder). Only the fields at or below ``under`` are touched, so a value
    resolved earlier keeps its meaning. ``data.name`` is a path only when that folder
    exists (otherwise it is a Hugging Face Hub name); ``timm:`` only after ``local-dir:``.
    """
    for field_path in PATH_FIELDS:
        if field_path[: len(under)] != under[: len(field_path)]:
            continue
        section = data.get(field_path[0])
        value = section.get(field_path[1]) if isinstance(section, dict) else None
        if not isinstance(value, str) or not value:
            continue
        if field_path[1] == "timm":
            if value.startswith(_LOCAL_DIR) and value[len(_LOCAL_DIR):]:
                section["timm"] = _LOCAL_DIR + _absolute(folder, value[len(_LOCAL_DIR):])
            continue
        if field_path == ("data", "name") and not (folder / expand_user(value)).exists():
            continue
        section[field_path[1]] = _absolute(folder, value)


def _absolute(folder: Path, value: str) -> str:
    path = folder / expand_user(value)
    try:
        return str(path.resolve())
    except (RuntimeError, OSError):  # a symlink loop: reported as not found by the later checks
        return str(path)


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
    _resolve_paths(data, Path.cwd(), path)  # paths given on the command line: relative to the working folder
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


def check_data_root(loaded: LoadedSpec) -> None:
    """Before training: an image folder's ``data.root`` holds both splits, each with images.

    A split is a folder or a tar file, under its name or one of timm's synonyms (see
    `tasgen.spec.image_folder`): every layout the data layer reads passes. A split
    folder must not hold a symlink cycle or a class folder without images, and its
    classes must not outnumber ``num_classes``. (Tar files are read whole by the data
    layer; here they are only checked to be tar files.)

    Not part of `load_spec`: a spec is valid on a machine that lacks the data.

    Raises:
        SpecError: located at ``data.root`` (or at ``num_classes`` when it is too small).
    """
    import tarfile

    from tasgen.spec.image_folder import (
        ImageFolderError,
        describe_split,
        find_split,
        scan_class_folders,
    )

    data = loaded.spec.data
    if data.dataset != "imagefolder" or data.root is None:
        return
    path = expand_user(data.root)
    layout = (f"expected {path}/{data.train_split}/<class>/<image> and {path}/val/<class>/<image>, "
              f"or {data.train_split}.tar and val.tar holding <class>/<image>")
    if not path.exists():
        raise loaded.error(("data", "root"), f"the image folder does not exist: {path}")
    if not path.is_dir():
        raise loaded.error(("data", "root"), f"the image folder is not a folder: {path}")
    train_classes = 0
    for split in (data.train_split, data.eval_split):
        found = find_split(path, split)
        if found is None:
            message = f"{path} has no {describe_split(split)}; {layout}"
        elif found.is_file():
            message = "" if tarfile.is_tarfile(found) else f"{found} is not a tar archive; {layout}"
        else:
            try:
                folders = scan_class_folders(found)
            except ImageFolderError as err:
                raise loaded.error(("data", "root"), str(err)) from None
            message = _class_folder_problem(found, folders.empty, len(folders.samples), layout)
            if split == data.train_split:
                train_classes = len(folders.class_to_idx)
        if message:
            raise loaded.error(("data", "root"), message)
    wanted = loaded.spec.num_classes
    if wanted is not None and train_classes > wanted:
        raise loaded.error(
            ("num_classes",),
            f"{path}/{data.train_split} has {train_classes} class folders, more than num_classes = {wanted}; "
            f"set num_classes: {train_classes} or leave it out",
        )


def _class_folder_problem(folder: Path, empty: Sequence[Path], images: int, layout: str) -> str:
    """What is wrong with a split folder's class folders ('' when nothing is)."""
    if images == 0:
        return f"{folder} holds no images (.png, .jpg or .jpeg); {layout}"
    if empty:
        names = ", ".join(p.name for p in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        one = len(empty) == 1
        return (f"{folder} has {len(empty)} class folder{'' if one else 's'} without images ({names}); "
                f"add {'its' if one else 'their'} images or remove {'it' if one else 'them'}")
    return ""


def _check_data(data: dict[str, Any], root: Site) -> list[Problem]:
    """What the schema alone cannot see: num_classes below a known dataset's class count."""
    from tasgen.spec.dataset_classes import BUILTIN_CLASSES

    section = data.get("data")
    dataset = section.get("dataset", "digits") if isinstance(section, dict) else "digits"
    classes = data.get("num_classes")
    known = BUILTIN_CLASSES.get(dataset) if isinstance(dataset, str) else None
    if isinstance(classes, int) and not isinstance(classes, bool) and known and 2 <= classes < known:
        return [
            Problem.at(
                locate(("num_classes",), root),
                "num_classes",
                f"{dataset} has {known} classes (labels 0..{known - 1}), more than num_classes = {classes}; "
                f"set num_classes: {known} or leave it out",
            )
        ]
    return []
