"""tasgen: compile a TAS distillation assistant from a YAML spec."""

# Commands import the library inside their bodies, so that `tasgen --help` and the
# commands that need no model (validate, schema) never import torch. A new command:
# parse its arguments, call the library inside _errors.user_errors, render with ._render.

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tasgen_cli._errors import say_created, user_errors

if TYPE_CHECKING:
    from tasgen.spec import LoadedSpec

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]})

from tasgen_cli._args import OverwriteOpt, SetOpt, SpecArg  # noqa: E402


def _load(spec: Path, overrides: list[str] | None) -> LoadedSpec:
    """Load and validate a spec, or exit 2 with its problems."""
    from tasgen.spec import load_spec

    with user_errors(reading_spec=True):
        return load_spec(spec, overrides or ())


def _print_version(value: bool) -> None:
    if value:
        from tasgen import __version__  # the package's __init__ imports no torch

        typer.echo(f"tasgen {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", "-V", help="Print tasgen's version and exit.", callback=_print_version, is_eager=True,
    )] = False,
) -> None:
    """tasgen: compile a TAS distillation assistant from a YAML spec."""


# ------------------------------------------------------------------ commands
@app.command()
def validate(
    spec: SpecArg,
    overrides: SetOpt = None,
    no_data: Annotated[bool, typer.Option(
        "--no-data", help="Check the spec alone, not its data on this machine (a spec written for another one).")
    ] = False,
) -> None:
    """Check a spec without building any model, and that an image folder it names exists here."""
    from tasgen.spec.load import check_data_root

    from ._render import print_valid

    loaded = _load(spec, overrides)
    if not no_data:
        with user_errors(reading_spec=True):
            check_data_root(loaded)
    print_valid(spec, loaded)


@app.command()
def schema(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file instead of stdout.", show_default=False
        ),
    ] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Print the JSON Schema of a spec (for editor completion)."""
    from tasgen.output import missing_folders, write_text
    from tasgen.spec import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    created = missing_folders(output)
    with user_errors(reading_spec=True):
        write_text(output, text, overwrite=overwrite)
    say_created(created)
    typer.echo(
        f"wrote {output}; add `# yaml-language-server: $schema={output}` atop a spec", err=True
    )


def main() -> None:
    """Entry point of the `tasgen` console script."""
    app()


def _register_commands() -> None:
    from tasgen_cli import bench_cmds, compare_cmds, plan_cmds, study_cmds, teacher_cmds, train_cmds

    plan_cmds.register(app)
    train_cmds.register(app)
    compare_cmds.register(app)
    study_cmds.register(app)
    bench_cmds.register(app)
    teacher_cmds.register(app)


_register_commands()
