"""Compare finished runs side by side (read from their run folders; no torch)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import TrainError


@dataclass(frozen=True)
class RunSummary:
    """What a run reached, from its spec.yaml and metrics.jsonl.

    Attributes:
        name: the run's spec name.
        method: tas, ofa, kd or none.
        epochs: epochs completed.
        student_top1, student_top5: the best epoch's student accuracy (%).
        assistant_top1: the assistant's accuracy at that epoch (None without one).
        teacher_top1: the teacher's accuracy (None without one).
        seconds: training time, summed over epochs.
    """

    name: str
    method: str
    epochs: int
    student_top1: float
    student_top5: float
    assistant_top1: float | None
    teacher_top1: float | None
    seconds: float


def summarise_run(run_dir: str | Path) -> RunSummary:
    """Read one run folder.

    Raises:
        TrainError: the folder holds no finished epoch.
    """
    folder = Path(run_dir)
    metrics, spec_file = folder / "metrics.jsonl", folder / "spec.yaml"
    if not metrics.is_file() or not spec_file.is_file():
        raise TrainError(f"{folder} is not a tasgen run folder (no metrics.jsonl or spec.yaml): train it first")
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    if not rows:
        raise TrainError(f"{folder} has no finished epoch yet")
    spec = yaml.safe_load(spec_file.read_text())
    best = max(rows, key=lambda r: r.get("student_top1", 0.0))
    return RunSummary(
        name=spec["name"], method=spec["distill"]["method"], epochs=rows[-1]["epoch"],
        student_top1=best["student_top1"], student_top5=best["student_top5"],
        assistant_top1=best.get("assistant_top1"), teacher_top1=rows[0].get("teacher_top1"),
        seconds=sum(r.get("seconds", 0.0) for r in rows),
    )
