"""`search_split`: short TAS runs of the planner's best candidates, ranked on validation.

The paper fixes the assistant at 3 local stages of 4 and names an automatic
search of the split as future work. This is that search, kept honest: every
candidate is trained with the same teacher, data and seeds, and ranked by the
student's validation top-1 (final epoch, mean over seeds). The test split is
reported beside it and chooses nothing.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasgen.spec.load import load_spec

from .runner import Progress, Variant, prepare_study, run_study
from .table import StudyError

__all__ = ["SearchResult", "search_split"]

FRAGMENT_FILE = "best-split.yaml"
_FREE = ("assistant.split=auto", "assistant.global_start=auto")


@dataclass(frozen=True)
class SearchResult:
    """The ranked candidates and the winner.

    Attributes:
        rows: One dict per candidate, best first: ``split``, ``global_start``,
            ``score`` (the planner's), ``planned`` (the planner's own choice),
            ``val_mean`` / ``val_std`` (the student's final validation top-1 over
            seeds), ``test_mean`` / ``test_std``, ``assistant_val_mean``.
        fragment: The spec fragment file that fixes the winner.
        record: The study record of the runs.
    """

    rows: list[dict[str, Any]]
    fragment: Path
    record: dict[str, Any]


def _candidates(spec_path: Path, overrides: Sequence[str], top: int) -> tuple[list[Any], tuple[int, int]]:
    from tasgen.compiler import plan_spec

    plan = plan_spec(load_spec(spec_path, (*overrides, *_FREE)))
    valid = [c for c in plan.candidates if c.valid][:top]
    return valid, (plan.split, plan.global_start)


def search_split(
    spec_path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    top: int = 4,
    epochs: int | None = None,
    seeds: int = 1,
    overrides: Sequence[str] = (),
    jobs: int = 1,
    progress: Progress | None = None,
) -> SearchResult:
    """Train the ``top`` best-scored candidates of ``tasgen plan --all`` and rank them.

    Args:
        spec_path: The spec (its method is set to tas for the search).
        folder: Where the runs, the table, the picture and the fragment go.
        top: Candidates to try, in the planner's order.
        epochs: Epochs per run (default: the spec's ``train.epochs``).
        seeds: Seeds per candidate.
        overrides: ``--set`` values for every run.
        jobs: Runs at once.
        progress: See `run_study`.

    Raises:
        StudyError: ``top`` or ``seeds`` < 1, or the spec has no validation split.
        SpecError: the spec is invalid.
    """
    if top < 1:
        raise StudyError(f"--top must be at least 1, got {top}")
    path = Path(spec_path)
    base = (*overrides, "distill.method=tas", *((f"train.epochs={epochs}",) if epochs else ()))
    loaded = load_spec(path, base)
    if loaded.spec.data.val_fraction == 0:
        raise StudyError("the split search ranks candidates on the validation split: set data.val_fraction > 0")
    candidates, planned = _candidates(path, base, top)
    variants = [
        Variant(f"split{c.split}-start{c.global_start}", (f"assistant.split={c.split}", f"assistant.global_start={c.global_start}"))
        for c in candidates
    ]
    study = prepare_study([path], variants, seeds, folder, base)
    record = run_study(study, jobs=jobs, progress=progress)

    by_variant: dict[str, list[dict[str, Any]]] = {}
    for run in record["runs"]:
        by_variant.setdefault(run["variant"], []).append(run)
    rows = []
    for cand, variant in zip(candidates, variants, strict=True):
        runs = by_variant.get(variant.name, [])
        val = [r["val_curve"][-1] for r in runs if r.get("val_curve")]
        test = [r["test_top1"] for r in runs]
        assistant = [r["assistant_test_top1"] for r in runs if not math.isnan(r["assistant_test_top1"])]
        rows.append({
            "split": cand.split, "global_start": cand.global_start, "score": cand.score,
            "planned": (cand.split, cand.global_start) == planned,
            "val_mean": statistics.fmean(val) if val else math.nan,
            "val_std": statistics.stdev(val) if len(val) > 1 else math.nan,
            "test_mean": statistics.fmean(test) if test else math.nan,
            "test_std": statistics.stdev(test) if len(test) > 1 else math.nan,
            "assistant_test_mean": statistics.fmean(assistant) if assistant else math.nan,
        })
    rows.sort(key=lambda r: (-r["val_mean"] if not math.isnan(r["val_mean"]) else math.inf, r["score"]))
    winner = rows[0]
    fragment = Path(folder) / FRAGMENT_FILE
    fragment.write_text(
        f"# Written by `tasgen search`: the best of {len(rows)} candidates by the student's validation\n"
        f"# top-1 ({winner['val_mean']:.2f}%, {len(study.seeds)} seed(s)). Use it with `extends:` or\n"
        f"# --set assistant.split={winner['split']} --set assistant.global_start={winner['global_start']}\n"
        f"assistant:\n  split: {winner['split']}\n  global_start: {winner['global_start']}\n",
        encoding="utf-8",
    )
    _plot(Path(folder), loaded.spec.name, rows)
    return SearchResult(rows, fragment, record)


def _plot(folder: Path, name: str, rows: list[dict[str, Any]]) -> None:
    from .figures import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.2 * len(rows), 3.4))
    labels = [f"{r['split']}->{r['global_start']}" + (" *" if r["planned"] else "") for r in rows]
    for key, offset, colour, text in (("val_mean", -0.17, "C0", "validation"), ("test_mean", 0.17, "C1", "test")):
        std_key = key.replace("mean", "std")
        ax.bar([i + offset for i in range(len(rows))], [r[key] for r in rows], width=0.34, color=colour, label=text,
               yerr=[0 if math.isnan(r[std_key]) else r[std_key] for r in rows])
    low = min(r[k] for r in rows for k in ("val_mean", "test_mean") if not math.isnan(r[k]))
    ax.set_ylim(max(0.0, low - 10), 100)
    ax.set_xticks(range(len(rows)), labels)
    ax.set_xlabel("local stages kept -> first global stage (* = planner's choice)")
    ax.set_ylabel("student top-1 % (final epoch)")
    ax.set_title(f"{name}: split search, ranked by validation", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, folder / "search")
    plt.close(fig)
