"""`tasgen study` (methods x seeds x specs) and `tasgen search` (the assistant's split)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from tasgen.study.runner import METHODS
from tasgen_cli._args import SetOpt
from tasgen_cli._errors import RERUN_STUDY, reported_warnings, say_created, user_errors

SpecsArg = Annotated[list[Path], typer.Argument(metavar="SPEC...", help="Spec files.", show_default=False)]
JobsOpt = Annotated[
    int, typer.Option("--jobs", min=1, help="Runs at once, each a process with an equal share of the CPU threads.")
]


def _progress() -> Any:
    from tasgen_cli._render import console

    def report(event: str, info: dict[str, Any]) -> None:
        if event == "teacher":
            console.print(f"teacher of {info['spec']}: {info['weights']}")
            if info.get("warning"):
                console.print(f"[bold red]warning:[/] {info['warning']}")
            return
        task, result = info["task"], info["result"]
        top1 = result.get("test_top1", math.nan)
        val = result.get("best_val_top1", math.nan)
        tail = "finished earlier" if event == "skip" else f"{result.get('seconds', 0):.0f}s"
        eta = info.get("eta")
        eta_text = f"  ETA {eta / 60:.1f} min" if eta is not None and info["done"] < info["total"] else ""
        console.print(
            f"[{info['done']}/{info['total']}] {task.spec_name}  {task.variant}  seed {task.seed}  "
            f"epoch {result.get('epochs', 0)}  test top-1 {top1:.2f}%  (best val {val:.2f}%)  {tail}{eta_text}",
            highlight=False,
        )

    return report


def pm(mean: float, std: float) -> str:
    """``mean ± std``; the mean alone without a std (one seed); ``-`` without a mean."""
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


_COLUMNS = ("spec", "method", "n", "top-1", "range", "val-chosen", "vs none (n)", "assistant", "teacher", "min")
_CAPTION = ("top-1: final epoch; range: min-max over seeds; val-chosen: test top-1 at the epoch the validation split "
            "chose; vs none: paired difference over the same seeds (n); min: training minutes")


def _study_rows(record: dict[str, Any]) -> list[tuple[str, ...]]:
    def num(v: float) -> str:
        return "-" if v is None or math.isnan(v) else f"{v:.2f}"

    return [(
        row["spec"], row["variant"], str(row["n"]), pm(row["mean"], row["std"]),
        f"{num(row['min'])}-{num(row['max'])}", pm(row["best_val_mean"], row["best_val_std"]),
        "-" if row["variant"] == "none" or row["diff_n"] == 0 else f"{pm(row['diff_mean'], row['diff_std'])} ({row['diff_n']})",
        num(row["assistant_mean"]), num(row["teacher"]), f"{row['seconds'] / 60:.1f}",
    ) for row in record["summary"]]


def study_markdown(record: dict[str, Any]) -> str:
    """The aggregate table as GitHub Markdown (for a results page), its caption below it."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join(" --- " for _ in _COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _study_rows(record)]
    return "\n".join(lines) + f"\n\n{_CAPTION[0].upper()}{_CAPTION[1:]}.\n"


def print_study(record: dict[str, Any], title: str) -> None:
    """The aggregate table: per spec and variant, test top-1 over seeds and the paired gain over `none`."""
    from rich import box
    from rich.table import Table

    from tasgen_cli._render import print_table

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, caption=_CAPTION, caption_justify="left")
    for column in _COLUMNS:
        table.add_column(column, justify="left" if column in ("spec", "method") else "right", no_wrap=True)
    for row in _study_rows(record):
        table.add_row(*row)
    print_table(table)


def register(app: typer.Typer) -> None:
    """Add `study` and `search` to the app."""

    @app.command()
    def study(
        specs: SpecsArg,
        methods: Annotated[str, typer.Option(
            "--methods", help="Comma-separated registered methods (built in: none, kd, fitnet, crd, dkd, dist, ofa, "
                              "tas; a package may add more).")] = ",".join(METHODS),
        seeds: Annotated[int, typer.Option("--seeds", help="Seeds 0..N-1 per spec and method.")] = 5,
        overrides: SetOpt = None,
        output: Annotated[Path, typer.Option("-o", "--output", help="The study folder.")] = Path("runs/study"),
        jobs: JobsOpt = 1,
        arms: Annotated[list[str] | None, typer.Option(
            "--arm", metavar="NAME:KEY=VALUE[;KEY=VALUE...]",
            help="An extra arm (an ablation row), e.g. 'tas-head:distill.method=tas;distill.feature.pool=head' "
                 "(repeatable).")] = None,
    ) -> None:
        """Train every spec with every method and seed; print mean ± std of test top-1 and the gain over `none`.

        Re-running the same command skips finished runs and resumes an interrupted one; a re-run with other
        settings in the same folder is refused, naming the runs and the keys that differ.
        """
        from tasgen.output import missing_folders

        created = missing_folders(output, kind="folder")[:-1]  # the study folder itself is announced below
        with user_errors(on_interrupt=RERUN_STUDY), reported_warnings():
            from tasgen.output import check_output
            from tasgen.study import arm_variant, method_variants, prepare_study, run_study
            from tasgen.study.figures import plot_study

            names = [m.strip() for m in methods.split(",") if m.strip()]
            variants = method_variants(names) + [arm_variant(a) for a in arms or []]
            planned = prepare_study(specs, variants, seeds, output, overrides or [])
            check_output(output, kind="folder", resumable=True)  # before the study is announced
            typer.echo(f"study: {len(planned.specs)} spec(s) x {len(variants)} arm(s) x {len(planned.seeds)} seed(s) "
                       f"= {len(planned.tasks)} runs -> {output}")
            record = run_study(planned, jobs=jobs, progress=_progress())
            say_created(created)
            pictures = plot_study(output, record["runs"], record["teachers"])
        print_study(record, f"{output}: test top-1 % (final epoch; mean ± std over seeds)")
        typer.echo(f"wrote {output / 'study.json'}, {output / 'study.csv'} and {len(pictures)} pictures")

    @app.command()
    def search(
        spec: Annotated[Path, typer.Argument(metavar="SPEC", help="The spec file.", show_default=False)],
        top: Annotated[int, typer.Option("--top", help="Candidates of `tasgen plan --all` to train, best scored first.")] = 4,
        epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs per run (default: train.epochs).")] = None,
        seeds: Annotated[int, typer.Option("--seeds", min=1, help="Seeds per candidate.")] = 1,
        overrides: SetOpt = None,
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Folder (default runs/search-<name>).")] = None,
        jobs: JobsOpt = 1,
    ) -> None:
        """Search the assistant's split: short TAS runs of the best candidates, ranked by validation top-1."""
        from rich import box
        from rich.table import Table

        from tasgen_cli._render import print_table

        with user_errors(on_interrupt=RERUN_STUDY), reported_warnings():
            from tasgen.output import missing_folders
            from tasgen.spec.load import load_spec
            from tasgen.study import search_split

            folder = output or Path("runs") / f"search-{load_spec(spec, overrides or []).spec.name}"
            created = missing_folders(folder, kind="folder")
            result = search_split(spec, folder, top=top, epochs=epochs, seeds=seeds, overrides=overrides or [],
                                  jobs=jobs, progress=_progress())
            say_created(created)
        table = Table(title=f"{folder}: student top-1 %, final epoch (ranked by validation; * = planner's choice)",
                      title_justify="left", box=box.SIMPLE_HEAD)
        for column in ("rank", "split", "global start", "planner score", "validation", "test", "assistant (test)"):
            table.add_column(column, justify="right", no_wrap=True)

        for rank, row in enumerate(result.rows, 1):
            table.add_row(str(rank), f"{row['split']}{' *' if row['planned'] else ''}", str(row["global_start"]),
                          f"{row['score']:.3f}", pm(row["val_mean"], row["val_std"]), pm(row["test_mean"], row["test_std"]),
                          pm(row["assistant_test_mean"], math.nan))
        print_table(table)
        best = result.rows[0]
        typer.echo(f"winner written to {result.fragment}: --set assistant.split={best['split']} "
                   f"--set assistant.global_start={best['global_start']}")
