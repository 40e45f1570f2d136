"""A run's ``metrics.jsonl``: one JSON row per epoch, read the same way by every consumer.

`tasgen compare`, `tasgen study`, the run pictures and resume all read the rows
through `read_metrics`. Pure Python (no torch), so reading a study stays fast.

The trainer writes the file atomically, so a torn last line only comes from outside
(a copy cut short, a full disk under another writer, an old version): that line is
dropped with a warning naming the file, since every row before it is whole and
``--resume`` rewrites the file from ``last/``. A damaged row before the last one is
not a torn write: it is refused, naming the file and line.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

__all__ = ["METRICS_FILE", "MetricsError", "MetricsWarning", "evaluated_rows", "read_metrics"]

METRICS_FILE = "metrics.jsonl"


class MetricsError(Exception):
    """A metrics file cannot be read; the message names the file and line."""


class MetricsWarning(UserWarning):
    """A torn last row was dropped from a metrics file."""


def evaluated_rows(rows: list[dict[str, Any]], model: str = "student") -> list[dict[str, Any]]:
    """The rows of the epochs on which ``model`` was evaluated (``<model>_top1`` present).

    Every row without ``train.eval_every``; with it, the epochs it names and the run's
    last (the rows of the others carry losses and timings only).
    """
    return [row for row in rows if f"{model}_top1" in row]


def read_metrics(file: str | Path, *, strict: bool = False) -> list[dict[str, Any]]:
    """The rows of a metrics file, in order (none when it does not exist).

    Args:
        file: a ``metrics.jsonl``.
        strict: refuse a torn last row too (a checkpoint's own rows, which its
            manifest's sha256 vouches for, are never torn).

    Returns:
        One dict per row; a torn last row is left out, with a `MetricsWarning`.

    Raises:
        MetricsError: a row that is not a JSON object (the last one only when ``strict``),
            or a file that cannot be read.
    """
    path = Path(file)
    if not path.is_file():
        return []
    try:
        # Rows are ASCII JSON; undecodable bytes make their row unreadable, not the file.
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise MetricsError(f"cannot read {path}: {exc.strerror or exc}") from None
    numbered = [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]
    rows: list[dict[str, Any]] = []
    for index, (number, line) in enumerate(numbered):
        row = _row(line)
        if row is not None:
            rows.append(row)
            continue
        if index == len(numbered) - 1 and not strict:
            warnings.warn(
                f"{path}:{number}: the last metrics row is torn (cut short while it was written); reading the "
                f"{len(rows)} whole row{'s' if len(rows) != 1 else ''} before it. `tasgen train SPEC --resume` "
                "rewrites the file from the run's last/ checkpoint.",
                MetricsWarning, stacklevel=2,
            )
            break
        raise MetricsError(
            f"{path}:{number}: not a JSON metrics row (the file was altered). Restore it, or let "
            "`tasgen train SPEC --resume` rewrite it from the run's last/ checkpoint."
        )
    return rows


def _row(line: str) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and isinstance(row.get("epoch"), int) else None
