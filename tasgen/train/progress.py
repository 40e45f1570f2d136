"""What a run shows a person: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import warnings
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

# Readouts that are not loss terms; on a narrow bar they give way to the terms first.
_RATES = ("img/s", "lr", "mfu")
_ETA_WIDTH = 7  # TimeRemainingColumn's "0:01:23"


class RunProgress:
    """Progress of a run: a live bar (loss terms, images/s, lr, ETA) on a terminal,
    a plain line every log interval and per epoch otherwise; nothing when ``quiet``.

    The bar fits the terminal: loss terms go by short names (``ts.f`` for
    ``teacher_student.feature``, said once above the bar) and the readouts that do
    not fit are left off it; the per-epoch line has them all under their full names.

    Args:
        quiet: print nothing (tests, ranks other than 0).
        console: where to write; a new stdout console by default.
    """

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(highlight=False, soft_wrap=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self._description = ""
        self._total = 0
        self._short: dict[str, str] | None = None

    def log(self, message: str) -> None:
        """One line of news (above the bar when there is one)."""
        if not self.quiet:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """Something legal but suspicious: shown like news, or as a Python warning when quiet."""
        if self.quiet:
            warnings.warn(message, UserWarning, stacklevel=2)
        else:
            self.console.print(f"[bold yellow]warning:[/] {message}")

    def start(self, total_updates: int, done: int, description: str) -> None:
        """Show the bar for ``total_updates`` updates, ``done`` of them already made."""
        self._description, self._total = description, total_updates
        if self.quiet or not self.console.is_terminal:
            return
        # A long run name must not push the bar, count and ETA off a narrow terminal.
        most = max(12, self.console.width // 4)
        self._description = description if len(description) <= most else description[: most - 1] + "…"
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=self._bar_width()),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(self._description, total=total_updates, completed=done, stats="")

    def update(self, step: int, stats: dict[str, float]) -> None:
        """Show ``stats`` at update ``step``: on the bar, or as a line when there is no terminal."""
        if self.quiet:
            return
        if self._progress is None:
            if self.console.is_terminal:
                return  # no bar started
            where = f"{self._description}  step {step}/{self._total}" if self._total else f"step {step}"
            line = "  ".join([where, *(_fmt(k, v) for k, v in stats.items())])
            self.console.print(line, highlight=False, soft_wrap=True)  # one line per interval, for grep
            return
        if self._short is None:
            self._short = short_names([k for k in stats if k not in _RATES and k != "loss"])
            legend = [f"{short} = {name}" for name, short in self._short.items() if short != name]
            if legend:
                self._progress.console.print(f"on the bar: {', '.join(legend)}", highlight=False)
        self._progress.update(self._task, completed=step, stats=self._fit(stats))

    def stop(self) -> None:
        """Remove the live bar (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _bar_width(self) -> int:
        return max(8, min(40, self.console.width // 10))

    def _fit(self, stats: dict[str, float]) -> str:
        """The readouts that fit beside the description, bar, step count and ETA, whole."""
        total = len(str(self._total))
        room = (self.console.width - len(self._description) - self._bar_width() - (2 * total + 1)
                - _ETA_WIDTH - 4)  # 4 one-space gaps between the 5 columns
        ordered = [k for k in stats if k not in _RATES] + [k for k in _RATES if k in stats]
        shown: list[str] = []
        for key in ordered:
            item = _fmt((self._short or {}).get(key, key), stats[key])
            if len("  ".join([*shown, item])) > room:
                break
            shown.append(item)
        return "  ".join(shown)


def short_names(terms: list[str]) -> dict[str, str]:
    """Short names of loss terms for a narrow bar: ``teacher_student.feature`` -> ``ts.f``.

    Each dotted part is shortened on its own: words joined by ``_`` to their
    initials, a longer word to its first letter and any trailing digits
    (``stage2`` -> ``s2``); parts of up to 4 letters stay (``ce``, ``ofa``). Terms
    whose short names would clash keep their full names.
    """
    def part(text: str) -> str:
        if "_" in text:
            return "".join(w[:1] for w in text.split("_") if w)
        if len(text) <= 4:
            return text
        digits = len(text) - len(text.rstrip("0123456789"))
        return text[0] + (text[-digits:] if digits else "")

    short = {name: ".".join(part(p) for p in name.split(".")) for name in terms}
    taken = list(short.values())
    return {name: s if taken.count(s) == 1 else name for name, s in short.items()}


def _fmt(key: str, value: float) -> str:
    if key == "lr":
        return f"lr {value:.2e}"
    if key.endswith("img/s"):
        return f"{value:.0f} img/s"
    if key == "mfu":
        return f"MFU {value:.1%}"
    return f"{key} {value:.4g}"
