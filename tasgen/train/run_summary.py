"""Compare finished runs side by side (read from their run folders; no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from tasgen.run_metrics import evaluated_rows, read_metrics

from .errors import TrainError
from .run_folder import RunFolder


@dataclass(frozen=True)
class RunSummary:
    """What a run reached, from its spec.yaml and metrics.jsonl.

    Attributes:
        name: the run's spec name.
        method: the registered method (tas, ofa, kd, fitnet, crd, dkd, dist, none or a package's).
        epochs: epochs completed.
        student_top1, student_top5: the student's test accuracy (%) at the last evaluated epoch
            (the last epoch, unless the run stopped after one that train.eval_every skipped).
        best_val_top1: the student's test top-1 at the epoch the validation split
            chose (best/); None without a validation split.
        assistant_top1: the assistant's test accuracy at the last epoch (None without one).
        teacher_top1: the teacher's accuracy (None without one).
        seconds: training time, summed over epochs.
    """

    name: str
    method: str
    epochs: int
    student_top1: float
    student_top5: float
    best_val_top1: float | None
    assistant_top1: float | None
    teacher_top1: float | None
    seconds: float


def summarise_run(run_dir: str | Path) -> RunSummary:
    """Read one run folder.

    Raises:
        TrainError: the folder holds no finished epoch.
    """
    folder = Path(run_dir)
    run = RunFolder(folder)
    metrics, spec_file = run.metrics_jsonl, run.spec_file
    if not metrics.is_file() or not spec_file.is_file():
        raise TrainError(f"{folder} is not a tasgen run folder (no metrics.jsonl or spec.yaml): train it first")
    every = read_metrics(metrics)  # a torn last row is left out, with a warning
    rows = evaluated_rows(every)  # the epochs train.eval_every evaluated (the run's last among them)
    if not rows:
        raise TrainError(f"{folder} has no finished, evaluated epoch yet" if every else f"{folder} has no finished epoch yet")
    spec = yaml.safe_load(spec_file.read_text())
    last = rows[-1]
    # The best epoch is chosen on validation only; the test split never picks anything.
    best = max(rows, key=lambda r: r["val_student_top1"]) if "val_student_top1" in last else None
    return RunSummary(
        name=spec["name"], method=spec["distill"]["method"], epochs=every[-1]["epoch"],
        student_top1=last["student_top1"], student_top5=last["student_top5"],
        best_val_top1=best["student_top1"] if best is not None else None,
        assistant_top1=last.get("assistant_top1"), teacher_top1=rows[0].get("teacher_top1"),
        seconds=sum(r.get("seconds", 0.0) for r in every),
    )
