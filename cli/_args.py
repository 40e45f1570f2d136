"""Arguments shared by every command that reads a spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

SpecArg = Annotated[
    Path, typer.Argument(metavar="SPEC", help="The YAML spec file.", show_default=False)
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace an existing output (else it is refused; see docs/reliability.md).")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a spec value, e.g. --set train.epochs=5 (repeatable; VALUE is YAML).",
        show_default=False,
    ),
]


