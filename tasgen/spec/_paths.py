"""Walking the schema along a dotted path: `--set` targets and key suggestions."""

from __future__ import annotations

import difflib
import types
from collections.abc import Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

from .schema import Spec

# Tags of the callable discriminator of `teacher` / `student`; pydantic puts them in locs.
DISCRIMINATOR_TAGS = frozenset({"timm-model", "backbone"})


def alternatives(tp: Any) -> list[Any]:
    """The concrete choices of an annotation: Annotated and Optional stripped, unions flattened."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    if get_origin(tp) in (Union, types.UnionType):
        return [alt for arg in get_args(tp) for alt in alternatives(arg)]
    return [] if tp is type(None) else [tp]


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _children(tp: Any, key: str | int) -> list[Any]:
    found = []
    for alt in alternatives(tp):
        origin = get_origin(alt)
        if is_model(alt) and isinstance(key, str) and key in alt.model_fields:
            found.append(alt.model_fields[key].annotation)
        elif origin is dict and isinstance(key, str):
            found.append(get_args(alt)[1])
        elif origin is list and isinstance(key, int):
            found.append(get_args(alt)[0])
    return found


def keys_at(path: Sequence[str | int]) -> list[str]:
    """The schema's keys of the mapping at ``path`` (both models of a discriminated union)."""
    position: list[Any] = [Spec]
    for key in path:
        position = [child for tp in position for child in _children(tp, key)]
    return [
        name
        for tp in position
        for alt in alternatives(tp)
        if is_model(alt)
        for name in alt.model_fields
    ]


def unknown_key_message(key: object, valid: Sequence[str]) -> str:
    """``unknown key 'epoch' (did you mean 'epochs'?)``, or the valid keys when none is close."""
    valid = list(dict.fromkeys(valid))
    close = difflib.get_close_matches(str(key), valid, n=2, cutoff=0.6)
    if close:
        hint = " or ".join(repr(c) for c in close)
        return f"unknown key {key!r} (did you mean {hint}?)"
    return (
        f"unknown key {key!r} (valid keys: {', '.join(valid)})" if valid else f"unknown key {key!r}"
    )


class PathError(ValueError):
    """A dotted path that the schema does not have."""


def parse_path(dotted: str) -> tuple[str | int, ...]:
    """Turn ``student.stages.1.channels`` into a schema-checked path.

    Digits become list indices where the schema has a list there.

    Raises:
        PathError: naming the first bad segment and the closest valid keys.
    """
    segments = dotted.split(".")
    if not dotted or any(not s for s in segments):
        raise PathError(f"{dotted!r} is not a dotted key path such as train.epochs")
    path: list[str | int] = []
    position: list[Any] = [Spec]
    for segment in segments:
        key: str | int = segment
        is_list = any(get_origin(alt) is list for tp in position for alt in alternatives(tp))
        if is_list:
            if not segment.isdigit():
                raise PathError(f"{_where(path)} is a list; use a 0-based index, not {segment!r}")
            key = int(segment)
        children = [child for tp in position for child in _children(tp, key)]
        if not children:
            valid = keys_at(path)
            if not valid:
                raise PathError(f"{_where(path)} is a single value; it has no key {segment!r}")
            raise PathError(unknown_key_message(segment, valid))
        path.append(key)
        position = children
    return tuple(path)


def _where(path: Sequence[str | int]) -> str:
    return ".".join(map(str, path)) or "the spec"
