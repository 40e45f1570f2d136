"""Turning pydantic's validation errors into located, readable problems."""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ._paths import DISCRIMINATOR_TAGS, keys_at, unknown_key_message
from ._yaml import Site
from .errors import Location, Problem

# Pydantic names the failed member of a plain union in the loc: ('heads', 'int'),
# ('kwargs', 'x', 'list[int]', 1), ('compile', "literal['default',...]").
_UNION_LABEL = re.compile(r"^(int|float|bool|str|bytes|none)$|^[a-z][a-z-]*\[")

Loc = tuple[str | int, ...]


def _is_label(item: object) -> bool:
    return isinstance(item, str) and bool(_UNION_LABEL.match(item))


def clean_path(loc: Sequence[str | int], root: Site) -> tuple[Loc, int | None, str | None]:
    """Strip discriminator tags and union labels from a pydantic loc.

    Returns:
        The spec path, the length of the path where the first union label sat (or
        None) and that label.
    """
    path: list[str | int] = []
    site: Site | None = root
    label_at: int | None = None
    label: str | None = None
    for item in loc:
        if site is not None and item in site.children:
            path.append(item)
            site = site.children[item]
        elif item in DISCRIMINATOR_TAGS:
            continue
        elif _is_label(item):
            if label is None:
                label_at, label = len(path), str(item)
        else:  # beyond the data, e.g. a missing key
            path.append(item)
            site = None
    return tuple(path), label_at, label


def dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def locate(path: Sequence[str | int], root: Site, *, key: bool = False) -> Location:
    """The source of ``path``, or of its nearest existing parent; ``key`` prefers the key's mark."""
    site = root
    for item in path:
        child = site.children.get(item)
        if child is None:
            return site.best
        site = child
    if key and site.key is not None:
        return site.key
    return site.best


def _pretty_label(label: str) -> str:
    if label.startswith("literal["):
        values = re.findall(r"'([^']*)'", label)
        return repr(values[0]) if len(values) == 1 else "one of " + ", ".join(map(repr, values))
    return label


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: dict[str, Any]) -> str:
    msg: str = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    if msg[:1].isupper() and msg[1:2].islower():
        msg = msg[0].lower() + msg[1:]
    if err["type"] == "literal_error":
        expected = re.findall(r"'([^']*)'", err.get("ctx", {}).get("expected", ""))
        close = difflib.get_close_matches(str(err["input"]), expected, n=1)
        if close:
            return f"{msg} (got {_got(err['input'])}; did you mean {close[0]!r}?)"
    return f"{msg} (got {_got(err['input'])})"


def validation_problems(
    error: ValidationError, root: Site, *, name_defaulted: bool = False
) -> list[Problem]:
    """One located problem per error (union alternatives folded into one)."""
    problems: list[Problem] = []
    unions: dict[Loc, list[tuple[dict[str, Any], Loc, str]]] = defaultdict(list)
    for err in error.errors(include_url=False):
        path, label_at, label = clean_path(err["loc"], root)
        if label_at is not None:
            unions[path[:label_at]].append((err, path, str(label)))
        else:
            problems.append(_problem(err, path, root, name_defaulted))
    for at, branches in unions.items():
        # One member got past the type check and failed deeper (e.g. list[int] with a
        # bad item): its errors say more than "expected int or list[int]".
        deeper = [(err, path) for err, path, _ in branches if len(path) > len(at)]
        if deeper:
            problems.extend(_problem(err, path, root, name_defaulted) for err, path in deeper)
            continue
        labels = [_pretty_label(label) for _, _, label in branches]
        message = (
            f"expected {' or '.join(dict.fromkeys(labels))} (got {_got(branches[0][0]['input'])})"
        )
        problems.append(Problem.at(locate(at, root), dotted(at), message))
    return problems


def _problem(err: dict[str, Any], path: Loc, root: Site, name_defaulted: bool) -> Problem:
    kind = err["type"]
    if kind == "missing":
        parent = path[:-1]
        return Problem.at(
            locate(parent, root), dotted(parent), f"missing required key {path[-1]!r}"
        )
    if kind == "extra_forbidden":
        message = unknown_key_message(path[-1], keys_at(path[:-1]))
        if len(path) == 2 and path[0] in ("teacher", "student") and path[-1] in ("stem", "stages"):
            # The key is valid for the other form of a model, not beside `timm`.
            message = (
                f"'{path[-1]}' cannot go with 'timm': a model is either {{timm: <model name>}} "
                "or a backbone with 'stem' and 'stages'"
            )
        return Problem.at(locate(path, root, key=True), dotted(path), message)
    if (
        kind in ("model_type", "model_attributes_type")
        and len(path) == 1
        and path[0] in ("teacher", "student")
    ):
        message = (
            "expected a mapping: {timm: <model name>} or a backbone with 'stem' and 'stages'"
            f" (got {_got(err['input'])})"
        )
        return Problem.at(locate(path, root), dotted(path), message)
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem.at(
            locate(path, root), dotted(path), f"expected a mapping (got {_got(err['input'])})"
        )
    message = _message(err)
    if path == ("name",) and name_defaulted:
        message += "; the name defaults to the spec's file name, so add a valid `name:` key"
    return Problem.at(locate(path, root), dotted(path), message)
