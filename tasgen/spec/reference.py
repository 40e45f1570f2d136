"""References generated from the schema: JSON Schema for editors, Markdown for docs/.

Regenerate the docs page with ``python -m tasgen.spec > docs/spec.md``.
"""

from __future__ import annotations

import enum
import inspect
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from ._paths import alternatives, is_model
from .schema import Spec

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Defaults that the loader supplies, not the schema.
_LOADER_DEFAULTS = {(Spec, "name"): "the spec file's name"}


# ----------------------------------------------------------------- JSON Schema
def json_schema() -> dict[str, Any]:
    """The JSON Schema of a spec file, for editor completion and validation.

    ``name`` is optional in the file (the loader defaults it to the file name), so it
    is not listed as required here.
    """
    schema = Spec.model_json_schema()
    schema["required"] = [key for key in schema.get("required", []) if key != "name"]
    schema.pop("title", None)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": "tasgen spec", **schema}


# -------------------------------------------------------------------- Markdown
# The example spec of the reference page (tests load it too).
EXAMPLE_SPEC = """\
name: demo
teacher: {timm: resnet18}
student:
  stem: {kind: conv, channels: 16, stride: 2}
  stages:
    - {mixer: conv, channels: 16, depth: 1}
    - {mixer: attention, channels: 32, depth: 1, stride: 2, heads: 2}
data: {dataset: digits, image_size: 32, batch_size: 32}
"""

_HEADER = (
    """\
# Spec reference

<!-- Generated from tasgen/spec/schema.py by `python -m tasgen.spec > docs/spec.md`.
     Do not edit by hand: tests/spec/test_reference.py fails when this page is stale. -->

A spec is one YAML file that describes one distillation experiment: the teacher,
the student, how the assistant is assembled, the losses, the data and the training
schedule. `tasgen validate SPEC` checks a spec without importing torch.

```yaml
"""
    + EXAMPLE_SPEC
    + """```

## How a spec is read

- Only plain YAML is accepted: tags such as `!!python/object` are rejected, never run.
- `extends: base.yaml` merges a base spec (path relative to the extending file,
  recursively) under the file: mappings merge key by key, lists and single values
  replace. A base's `name` is not inherited.
- `name` defaults to the spec's file name without its suffix.
- One rule for paths: every relative path written in a spec file is relative to the
  folder of that file (a base's paths to the base), wherever tasgen is run from:
  `teacher.checkpoint`, `student.checkpoint`, `timm: local-dir:PATH`, `data.root`,
  `data.name` (hfds: when that folder exists; otherwise it is a Hub name) and
  `train.output_dir`. A path given with `--set` is relative to the working folder,
  as is the default `train.output_dir: runs`. `~` is the home folder. Paths are
  stored absolute (the run's `spec.yaml` holds them so). A checkpoint file must
  exist; `tasgen validate` also checks that an imagefolder `data.root` exists here,
  with `train/` and no more class folders than `num_classes` (`--no-data` skips
  this for a spec written for another machine).
- `--set a.b.c=value` (repeatable) overrides a value after merging; the value is
  read as YAML, e.g. `--set train.epochs=5`, `--set teacher='{timm: resnet34}'`,
  `--set student.stages.1.channels=64` (list items by 0-based index).
- timm names are checked against the installed timm (a pretrained tag such as
  `vit_small_patch16_224.augreg_in21k` is fine).
- Every problem is reported at once, one per line, as `file:line:column: key.path: message`;
  a problem in an override reads `--set:N:column: ...` for the N-th `--set`.

## Editor completion

Write the JSON Schema next to your specs and point the YAML language server
(VS Code's YAML extension, Neovim's yamlls, ...) at it with a first-line comment:

```console
$ tasgen schema -o tasgen-spec.schema.json
```

```yaml
# yaml-language-server: $schema=tasgen-spec.schema.json
name: demo
teacher: {timm: resnet18}
```

## Keys
"""
)


def reference_markdown() -> str:
    """The spec reference (docs/spec.md): every key with its type, default and description."""
    sections = [_HEADER]
    for model, paths in _models_by_first_use():
        sections.append(_section(model, paths))
    return "\n".join(sections).rstrip() + "\n"


def _models_by_first_use() -> list[tuple[type[BaseModel], list[str]]]:
    """Each model of the schema with the dotted paths where it is used, breadth first."""
    found: dict[type[BaseModel], list[str]] = {Spec: []}
    # Every use is walked, not the first only: a stage-described backbone's stem is used
    # at teacher.stem and at student.stem. The ancestors guard a model that contains itself.
    queue: list[tuple[type[BaseModel], str, tuple[type[BaseModel], ...]]] = [(Spec, "", (Spec,))]
    while queue:
        model, prefix, ancestors = queue.pop(0)
        for key, info in model.model_fields.items():
            path = f"{prefix}{key}"
            for sub in _nested_models(info.annotation):
                found.setdefault(sub, []).append(path)
                if sub not in ancestors:
                    queue.append((sub, f"{path}[]." if _is_list(info.annotation) else f"{path}.", (*ancestors, sub)))
    return list(found.items())


def _nested_models(tp: Any) -> Iterator[type[BaseModel]]:
    for alt in alternatives(tp):
        if is_model(alt):
            yield alt
        elif get_origin(alt) in (list, dict):
            yield from _nested_models(get_args(alt)[-1])


def _is_list(tp: Any) -> bool:
    return any(get_origin(alt) is list for alt in alternatives(tp))


def _section(model: type[BaseModel], paths: list[str]) -> str:
    lines = [f"### {model.__name__}", ""]
    if model.__doc__:
        lines += [inspect.cleandoc(model.__doc__), ""]
    if paths:
        lines += ["Used at: " + ", ".join(f"`{p}`" for p in paths) + ".", ""]
    else:
        lines += ["The top level of a spec file.", ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, info in model.model_fields.items():
        cells = [
            f"`{key}`",
            _type_text(info),
            _default_text(model, key, info),
            info.description or "",
        ]
        lines.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    return "\n".join(lines) + "\n"


def _type_text(info: FieldInfo) -> str:
    text = _annotation_text(info.annotation)
    bounds = _bounds(info)
    return f"{text} ({bounds})" if bounds else text


def _annotation_text(tp: Any) -> str:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(dict.fromkeys(_annotation_text(arg) for arg in get_args(tp)))
    if origin is Literal:
        return " or ".join(f"`{_yaml_scalar(v)}`" for v in get_args(tp))
    if origin is list:
        return f"list of {_annotation_text(get_args(tp)[0])}"
    if origin is dict:
        key, value = get_args(tp)
        return f"mapping of {_annotation_text(key)} to ({_annotation_text(value)})"
    if is_model(tp):
        return f"[{tp.__name__}](#{tp.__name__.lower()})"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " or ".join(f"`{m.value}`" for m in tp)
    names = {
        type(None): "null",
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        Path: "path",
    }
    return names.get(tp, getattr(tp, "__name__", str(tp)))


def _bounds(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        if isinstance(meta, at.Ge):
            parts.append(f">= {meta.ge}")
        elif isinstance(meta, at.Gt):
            parts.append(f"> {meta.gt}")
        elif isinstance(meta, at.Le):
            parts.append(f"<= {meta.le}")
        elif isinstance(meta, at.Lt):
            parts.append(f"< {meta.lt}")
        elif isinstance(meta, at.MinLen):
            parts.append(
                f"at least {_items(meta.min_length)}"
                if _is_list(info.annotation)
                else f"length >= {meta.min_length}"
            )
        elif isinstance(meta, at.MaxLen):
            parts.append(
                f"at most {_items(meta.max_length)}"
                if _is_list(info.annotation)
                else f"length <= {meta.max_length}"
            )
        elif getattr(meta, "pattern", None):
            parts.append(f"matches `{meta.pattern}`")
    return ", ".join(parts)


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _default_text(model: type[BaseModel], key: str, info: FieldInfo) -> str:
    if (model, key) in _LOADER_DEFAULTS:
        return _LOADER_DEFAULTS[model, key]
    if info.is_required():
        return "**required**"
    if info.default_factory is not None:
        if is_model(info.default_factory):
            return (
                f"see [{info.default_factory.__name__}](#{info.default_factory.__name__.lower()})"
            )
        return f"`{_yaml_scalar(info.default_factory())}`"
    return f"`{_yaml_scalar(info.default)}`"


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()
