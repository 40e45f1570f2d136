"""The method registry: every distillation method, built-in or a user's, by name.

timm's pattern: a name in a table is the only contract. The spec schema checks
``distill.method`` against the table, ``tasgen plan`` and ``tasgen study`` read it,
and the trainer asks it how to build a method's system and objective. Nothing here
imports torch: a method's record names its builder by import path ("pkg.mod:attr"),
imported only when a run builds it, so ``tasgen validate`` stays light.

Third-party methods arrive through the ``tasgen.methods`` entry-point group, read
the first time the table is asked for a name. An entry point names a `Method` record,
or a function of no arguments that registers methods; it must import without torch.
A plugin that fails to load is remembered by name with its error, and only a spec
that asks for one of its methods is refused.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

__all__ = [
    "ENTRY_POINT_GROUP",
    "Method",
    "MethodError",
    "broken_plugins",
    "get_method",
    "method_names",
    "register_method",
]

ENTRY_POINT_GROUP = "tasgen.methods"
PAIR_NAMES = ("teacher_student", "teacher_assistant", "assistant_student")


class MethodError(ValueError):
    """An unknown method, a clashing registration or a builder that cannot be imported."""


@dataclass(frozen=True)
class Method:
    """A distillation method as the registry knows it.

    Attributes:
        name: What ``distill.method`` says.
        summary: One line for ``tasgen plan``, ``--help`` and the docs.
        build: ``"package.module:function"`` (imported when a run is built) or the
            function itself: ``build(system, context) -> MethodParts`` (see
            `tasgen.losses.method`).
        params: The pydantic model of its hyper-parameters, or None. Built-in
            baselines read theirs from ``distill.<name>``; a user's method from
            ``distill.options.<name>``.
        pairs: Loss pairs it distils (``teacher_student``, ...), for the plan.
        section: Where its hyper-parameters sit in ``distill`` (default ``options.<name>``).
        origin: Who registered it: ``tasgen`` or the plugin's distribution.
    """

    name: str
    summary: str
    build: str | Callable[..., Any]
    params: type[BaseModel] | None = None
    pairs: tuple[str, ...] = ("teacher_student",)
    section: str | None = None
    origin: str = "user"

    def __post_init__(self) -> None:
        if not self.name.replace("-", "").replace("_", "").isalnum() or not self.name[:1].isalpha():
            raise MethodError(f"method name {self.name!r}: use letters, digits, '-' and '_', starting with a letter")
        bad = [p for p in self.pairs if p not in PAIR_NAMES]
        if bad:
            raise MethodError(f"method {self.name!r}: unknown pairs {bad}; choose from {', '.join(PAIR_NAMES)}")

    @property
    def params_key(self) -> tuple[str, ...]:
        """Where the hyper-parameters sit under ``distill``: ``(name,)`` or ``("options", name)``."""
        return (self.section,) if self.section else ("options", self.name)

    def builder(self) -> Callable[..., Any]:
        """The build function, imported now.

        Raises:
            MethodError: its module or attribute cannot be imported.
        """
        if callable(self.build):
            return self.build
        module, _, attr = self.build.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise MethodError(f"method {self.name!r}: cannot import its builder {self.build!r}: {exc}") from None


_METHODS: dict[str, Method] = {}
_BROKEN: dict[str, str] = {}
_plugins_read = False


def register_method(method: Method, *, replace: bool = False) -> Method:
    """Put ``method`` in the table; ``distill.method: <name>`` then selects it.

    Args:
        method: The record.
        replace: Allow replacing a method of the same name (re-running a notebook cell).

    Returns:
        ``method``.

    Raises:
        MethodError: the name is taken and ``replace`` is False.
    """
    old = _METHODS.get(method.name)
    if old is not None and not replace and old != method:
        raise MethodError(f"method {method.name!r} is already registered (by {old.origin}); pick another name")
    _METHODS[method.name] = method
    return method


def _read_plugins() -> None:
    """Load the ``tasgen.methods`` entry points once; remember the broken ones by name."""
    global _plugins_read
    if _plugins_read:
        return
    _plugins_read = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep.dist, "name", None) or ep.value
        try:
            obj = ep.load()
            if isinstance(obj, Method):
                register_method(obj)
            elif callable(obj):
                obj()
            else:
                raise MethodError(f"{ep.value} is neither a Method nor a function that registers methods")
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break tasgen; it is reported by name
            _BROKEN[ep.name] = f"entry point {ep.name!r} of {dist} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"


def _table() -> dict[str, Method]:
    from . import builtin  # noqa: F401 - registers the built-in methods through register_method

    _read_plugins()
    return _METHODS


def method_names() -> list[str]:
    """Every registered name, built-in methods first, in registration order."""
    return list(_table())


def broken_plugins() -> dict[str, str]:
    """Entry points that failed to load: ``{entry point name: what went wrong}``."""
    _table()
    return dict(_BROKEN)


def get_method(name: str) -> Method:
    """The registered method ``name``.

    Raises:
        MethodError: no such method; the message lists the registered ones, a close
            match, and a broken plugin of that name.
    """
    table = _table()
    if name in table:
        return table[name]
    if name in _BROKEN:
        raise MethodError(f"method {name!r} comes from a plugin that did not load: {_BROKEN[name]}")
    close = difflib.get_close_matches(name, table, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    broken = f" (plugins that failed to load: {', '.join(_BROKEN)})" if _BROKEN else ""
    raise MethodError(f"unknown method {name!r}: choose from {', '.join(table)}{broken}{hint}")

