"""What a run shows a person: a rich progress bar on a terminal, epoch lines otherwise."""

from __future__ import annotations

import warnings
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class RunProgress:
    """Progress of a run: a live bar (images/s, loss terms, lr, ETA) when writing to a
    terminal, one line per epoch when not; nothing at all when ``quiet``.

    Args:
        quiet: print nothing (tests, ranks other than 0).
        console: where to write; a new stdout console by default.
    """

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(highlight=False, soft_wrap=True)
        self._progress: Progress | None = None
        self._task: Any = None

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
        if self.quiet or not self.console.is_terminal:
            return
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task(description, total=total_updates, completed=done, stats="")

    def update(self, step: int, stats: dict[str, float]) -> None:
        """Move the bar to update ``step`` and show ``stats``."""
        if self._progress is None:
            return
        text = "  ".join(_fmt(k, v) for k, v in stats.items())
        self._progress.update(self._task, completed=step, stats=text)

    def stop(self) -> None:
        """Remove the live bar (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _fmt(key: str, value: float) -> str:
    if key == "lr":
        return f"lr {value:.2e}"
    if key.endswith("img/s"):
        return f"{value:.0f} img/s"
    if key == "mfu":
        return f"MFU {value:.1%}"
    return f"{key} {value:.4g}"
