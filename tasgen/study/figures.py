"""Pictures of a study and of a run (matplotlib, Agg backend; PNG and SVG)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasgen.run_metrics import METRICS_FILE, evaluated_rows, read_metrics

__all__ = ["plot_run", "plot_study"]

FORMATS = ("png", "svg")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # files only: no display, same output everywhere
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, stem: Path) -> list[Path]:
    paths = []
    for fmt in FORMATS:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=120, bbox_inches="tight")
        paths.append(path)
    return paths


def plot_study(folder: Path, runs: Sequence[dict[str, Any]], teachers: dict[str, Any] | None = None) -> list[Path]:
    """Per spec: test top-1 per variant (a dot per seed, a bar at the mean), and the
    test top-1 per epoch per variant (mean over seeds with a +-std band).

    Args:
        folder: Where ``<spec>-top1.{png,svg}`` and ``<spec>-curves.{png,svg}`` go.
        runs: The study's run rows (``spec``, ``variant``, ``seed``, ``test_top1``, ``curve``).
        teachers: Per spec, ``{"test_top1": ...}``, drawn as a dashed line.

    Returns:
        The files written.
    """
    plt = _pyplot()
    written: list[Path] = []
    for spec in dict.fromkeys(r["spec"] for r in runs):
        members = [r for r in runs if r["spec"] == spec]
        variants = list(dict.fromkeys(r["variant"] for r in members))
        teacher = (teachers or {}).get(spec, {}).get("test_top1")

        slot = max(1.1, 0.09 * max(len(v) for v in variants))  # inches per variant: room for its name
        fig, ax = plt.subplots(figsize=(1.4 + slot * len(variants), 3.6))
        for x, variant in enumerate(variants):
            values = [r["test_top1"] for r in members if r["variant"] == variant]
            offsets = [(i - (len(values) - 1) / 2) * 0.06 for i in range(len(values))]
            ax.scatter([x + o for o in offsets], values, s=18, color=f"C{x}", zorder=3, label=None)
            mean = statistics.fmean(values)
            ax.hlines(mean, x - 0.3, x + 0.3, color=f"C{x}", linewidth=2.5, zorder=2)
            ax.annotate(f"{mean:.2f}", (x + 0.32, mean), va="center", fontsize=8)
        if teacher is not None:
            ax.axhline(teacher, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"teacher {teacher:.2f}", (len(variants) - 0.5, teacher), va="bottom", ha="right",
                        fontsize=8, color="grey")
        ax.set_xticks(range(len(variants)), variants)
        ax.set_xlim(-0.6, len(variants) - 0.2)
        ax.set_ylabel("test top-1 % (final epoch)")
        ax.set_title(f"{spec}: one dot per seed, bar = mean", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        written += _save(fig, folder / f"{spec}-top1")
        plt.close(fig)

        fig, ax = plt.subplots(figsize=(6, 3.6))
        for x, variant in enumerate(variants):
            measured = [r for r in members if r["variant"] == variant and r.get("curve")]
            if not measured:
                continue
            # Per run, top-1 by epoch: the epochs train.eval_every evaluated (a study written before
            # they were recorded has every epoch); the mean is over the epochs every seed measured.
            curves = [dict(zip(r.get("curve_epochs") or range(1, len(r["curve"]) + 1), r["curve"], strict=True))
                      for r in measured]
            epochs = sorted(set.intersection(*(set(c) for c in curves)))
            means = [statistics.fmean(c[e] for c in curves) for e in epochs]
            stds = [statistics.stdev(c[e] for c in curves) if len(curves) > 1 else 0.0 for e in epochs]
            ax.plot(epochs, means, color=f"C{x}", label=variant)
            ax.fill_between(epochs, [m - s for m, s in zip(means, stds, strict=True)],
                            [m + s for m, s in zip(means, stds, strict=True)], color=f"C{x}", alpha=0.2)
        if teacher is not None:
            ax.axhline(teacher, color="grey", linestyle="--", linewidth=1, label="teacher")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test top-1 %")
        ax.set_title(f"{spec}: mean over seeds, band = +-std", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written += _save(fig, folder / f"{spec}-curves")
        plt.close(fig)
    return written


def plot_run(run_dir: str | Path) -> list[Path]:
    """A run's curves: top-1 per epoch (test and validation, per model) and the loss.

    Writes ``curves.png`` and ``curves.svg`` into the run folder.

    Returns:
        The files written (none when the run has no finished epoch).
    """
    folder = Path(run_dir)
    rows = read_metrics(folder / METRICS_FILE)
    if not rows:
        return []
    plt = _pyplot()
    epochs = [r["epoch"] for r in rows]
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    models = [m for m in ("student", "assistant", "teacher") if evaluated_rows(rows, m)]
    for i, model in enumerate(models):
        measured = evaluated_rows(rows, model)  # every epoch, or those train.eval_every evaluated
        at = [r["epoch"] for r in measured]
        acc.plot(at, [r[f"{model}_top1"] for r in measured], color=f"C{i}", label=f"{model} (test)",
                 marker="." if len(measured) < len(rows) else None)
        if f"val_{model}_top1" in measured[-1]:
            acc.plot(at, [r[f"val_{model}_top1"] for r in measured], color=f"C{i}", linestyle=":",
                     label=f"{model} (validation)")
    teacher = rows[0].get("teacher_top1")
    if teacher is not None and "teacher" not in models:
        acc.axhline(teacher, color="grey", linestyle="--", linewidth=1, label="teacher (test)")
    acc.set_xlabel("epoch")
    acc.set_ylabel("top-1 %")
    acc.grid(alpha=0.3)
    acc.legend(fontsize=8)
    losses = [r["loss"] for r in rows if not math.isnan(r.get("loss", math.nan))]
    loss.plot(epochs[: len(losses)], losses, color="C3")
    loss.set_xlabel("epoch")
    loss.set_ylabel("training loss (epoch mean)")
    loss.grid(alpha=0.3)
    fig.suptitle(folder.name, fontsize=10)
    written = _save(fig, folder / "curves")
    plt.close(fig)
    return written
