"""Typer application. Thin: parse arguments, call the library, render with rich."""

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


def main() -> None:
    app()
