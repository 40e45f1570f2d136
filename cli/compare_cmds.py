"""`tasgen compare`: finished runs side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tasgen_cli._errors import USER_ERROR_EXIT, reported_warnings, user_errors


def register(app: typer.Typer) -> None:
    """Add `compare` to the app."""

    @app.command()
    def compare(
        run_dirs: Annotated[
            list[Path], typer.Argument(metavar="RUN_DIR...", help="Run folders to compare, or one study folder.")
        ],
        markdown: Annotated[
            bool, typer.Option("--markdown", help="Print a study folder's table as GitHub Markdown.")
        ] = False,
    ) -> None:
        """Compare runs (test top-1 at the last epoch and at the validation-chosen epoch), or print a study's table."""
        from rich import box
        from rich.table import Table

        from tasgen.study.table import STUDY_FILE, read_study
        from tasgen.train.run_summary import summarise_run
        from tasgen_cli._render import print_table

        if len(run_dirs) == 1 and (run_dirs[0] / STUDY_FILE).is_file():
            from tasgen_cli.study_cmds import print_study, study_markdown

            with user_errors():
                record = read_study(run_dirs[0])
            if markdown:
                typer.echo(study_markdown(record), nl=False)
            else:
                print_study(record, f"{run_dirs[0]}: test top-1 % (final epoch; mean ± std over seeds)")
            return
        if markdown:
            typer.echo("error: --markdown prints a study folder's table; give one folder that holds study.json", err=True)
            raise typer.Exit(USER_ERROR_EXIT)
        with user_errors(), reported_warnings():
            runs = [summarise_run(d) for d in run_dirs]
        table = Table(title="test top-1 % (student: last epoch, and at the epoch validation chose; top-5 is the "
                      "student's, last epoch)", title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("run", no_wrap=True)
        table.add_column("method", no_wrap=True)
        for col in ("epochs", "student", "best-val epoch", "top-5", "assistant", "teacher", "secs"):
            table.add_column(col, justify="right", no_wrap=True)

        def pct(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        for r in runs:
            table.add_row(r.name, r.method, str(r.epochs), pct(r.student_top1), pct(r.best_val_top1), pct(r.student_top5),
                          pct(r.assistant_top1), pct(r.teacher_top1), f"{r.seconds:.0f}")
        print_table(table)
