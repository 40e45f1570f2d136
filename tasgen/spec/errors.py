"""Spec errors that point at the offending YAML node (file:line:column)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where a value came from: a file (or an override such as ``--set``), 1-based."""

    file: str
    line: int = 1
    column: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, located at a YAML node."""

    file: str
    line: int
    column: int
    path: str
    message: str

    @classmethod
    def at(cls, location: Location, path: str, message: str) -> Problem:
        """Build a problem at ``location`` for the dotted spec ``path``."""
        return cls(location.file, location.line, location.column, path, message)

    @property
    def location(self) -> Location:
        return Location(self.file, self.line, self.column)

    def __str__(self) -> str:
        # A problem of the whole file (empty path) reads `file:line:col: message`.
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(Exception):
    """A spec that cannot be loaded; ``problems`` lists every located problem found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(dict.fromkeys(problems))
        if not self.problems:
            raise ValueError("SpecError needs at least one problem")
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)
