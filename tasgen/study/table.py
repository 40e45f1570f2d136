"""A study's numbers, from its run folders: one row per run, one aggregate per (spec, variant).

Pure Python over ``metrics.jsonl`` files (no torch), so `tasgen compare STUDY_DIR`
stays fast. The headline of a run is its final-epoch test top-1; the test top-1 of
the epoch the validation split picks is reported beside it. The test split never
chooses anything.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tasgen.run_metrics import METRICS_FILE, evaluated_rows, read_metrics

__all__ = [
    "RUN_COLUMNS",
    "StudyError",
    "aggregate",
    "read_run",
    "read_study",
    "write_study",
]

STUDY_FILE = "study.json"
CSV_FILE = "study.csv"
BASELINE = "none"

RUN_COLUMNS = (
    "spec", "variant", "seed", "epochs", "test_top1", "test_top1_at_best_val", "best_val_top1", "best_epoch",
    "assistant_test_top1", "teacher_test_top1", "seconds", "run_dir",
)


class StudyError(Exception):
    """A study cannot start or be read; the message says what to change."""


def read_run(run_dir: Path, role: str = "student") -> dict[str, Any] | None:
    """The metrics of one run folder (a distillation run's student, or a teacher fit's teacher with
    ``role="teacher"``), or None when it has no finished, evaluated epoch.

    A torn last row is left out with a warning (see `read_metrics`).

    Returns:
        ``{"epochs", "test_top1", "test_top1_at_best_val", "best_val_top1", "best_epoch",
        "assistant_test_top1", "teacher_test_top1", "seconds", "curve", "curve_epochs", "val_curve"}``;
        ``curve`` is the test top-1 per evaluated epoch (``curve_epochs``: every epoch
        unless ``train.eval_every`` was raised), ``val_curve`` the validation top-1.
    """
    every = read_metrics(run_dir / METRICS_FILE)
    rows = evaluated_rows(every, role)  # the epochs train.eval_every evaluated, the last among them
    if not rows:
        return None
    final = rows[-1]
    val_key = f"val_{role}_top1"
    has_val = val_key in final
    # First epoch reaching the best validation top-1 (what best/ holds).
    best = max(rows, key=lambda r: r[val_key]) if has_val else final
    return {
        "epochs": int(final["epoch"]),
        "test_top1": float(final[f"{role}_top1"]),
        "test_top1_at_best_val": float(best[f"{role}_top1"]),
        "best_val_top1": float(best[val_key]) if has_val else math.nan,
        "best_epoch": int(best["epoch"]),
        "assistant_test_top1": float(final["assistant_top1"]) if "assistant_top1" in final else math.nan,
        "teacher_test_top1": float(rows[0]["teacher_top1"]) if role == "student" and "teacher_top1" in rows[0] else math.nan,
        "seconds": float(sum(r.get("seconds", 0.0) for r in every if r["epoch"] <= final["epoch"])),
        "curve": [float(r[f"{role}_top1"]) for r in rows],
        "curve_epochs": [int(r["epoch"]) for r in rows],
        "val_curve": [float(r[val_key]) for r in rows] if has_val else [],
    }


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN with fewer than two values)."""
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def aggregate(runs: Iterable[dict[str, Any]], baseline: str = BASELINE) -> list[dict[str, Any]]:
    """Per (spec, variant): test top-1 over seeds and the paired difference to ``baseline``.

    Args:
        runs: Rows with at least ``spec``, ``variant``, ``seed``, ``test_top1``,
            ``test_top1_at_best_val``, ``seconds`` (and optionally
            ``assistant_test_top1``, ``teacher_test_top1``).
        baseline: The variant differences are taken to, over the seeds both have.

    Returns:
        One dict per (spec, variant), in first-seen order: ``n``, ``mean``, ``std``,
        ``min``, ``max`` of the final-epoch test top-1; ``best_val_mean`` /
        ``best_val_std`` of the test top-1 at the best validation epoch;
        ``diff_mean`` / ``diff_std`` / ``diff_n`` of the paired difference to the
        baseline (NaN without a baseline run of the same seed); ``assistant_mean``;
        ``teacher``; ``seconds`` (summed).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["spec"], run["variant"]), []).append(run)
    out = []
    for (spec, variant), members in groups.items():
        members = sorted(members, key=lambda r: r["seed"])
        top1 = [r["test_top1"] for r in members]
        mean, std = _mean_std(top1)
        at_best, at_best_std = _mean_std([r["test_top1_at_best_val"] for r in members])
        base = {r["seed"]: r["test_top1"] for r in groups.get((spec, baseline), [])}
        diffs = [r["test_top1"] - base[r["seed"]] for r in members if r["seed"] in base]
        diff_mean, diff_std = _mean_std(diffs)
        assistant = [r["assistant_test_top1"] for r in members if not math.isnan(r.get("assistant_test_top1", math.nan))]
        teacher = [r["teacher_test_top1"] for r in members if not math.isnan(r.get("teacher_test_top1", math.nan))]
        out.append({
            "spec": spec, "variant": variant, "n": len(members), "seeds": [r["seed"] for r in members],
            "mean": mean, "std": std, "min": min(top1), "max": max(top1),
            "best_val_mean": at_best, "best_val_std": at_best_std,
            "diff_mean": diff_mean, "diff_std": diff_std, "diff_n": len(diffs),
            "assistant_mean": statistics.fmean(assistant) if assistant else math.nan,
            "teacher": statistics.fmean(teacher) if teacher else math.nan,
            "seconds": sum(r["seconds"] for r in members),
        })
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_study(folder: Path, config: dict[str, Any], teachers: dict[str, Any], runs: list[dict[str, Any]]) -> dict:
    """Write ``study.json`` (config, teachers, runs with curves, aggregate) and ``study.csv`` (one row per run).

    Both are written to a temporary name first and renamed, so a reader never sees half a file.

    Returns:
        The record (NaN where a figure does not exist; the file holds null there).
    """
    record = {"config": config, "teachers": teachers, "runs": runs, "summary": aggregate(runs)}
    tmp = folder / (STUDY_FILE + ".tmp")
    tmp.write_text(json.dumps(_json_safe(record), indent=1) + "\n", encoding="utf-8")
    tmp.replace(folder / STUDY_FILE)
    tmp = folder / (CSV_FILE + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for run in runs:
            writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in run.items()})
    tmp.replace(folder / CSV_FILE)
    return record


def read_study(folder: str | Path) -> dict[str, Any]:
    """Read ``study.json`` of a study folder (NaNs restored).

    Raises:
        StudyError: the folder holds no study.json, or it is not a tasgen study.
    """
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        raise StudyError(f"{folder} holds no {STUDY_FILE}: run `tasgen study SPEC ... -o {folder}` first")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        runs, summary = record["runs"], record["summary"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StudyError(f"{path} is not a tasgen study record ({exc}); re-run the study to rewrite it") from None

    def restore(row: dict[str, Any]) -> dict[str, Any]:
        return {k: (math.nan if v is None else v) for k, v in row.items()}

    record["runs"] = [restore(r) for r in runs]
    record["summary"] = [restore(r) for r in summary]
    return record
