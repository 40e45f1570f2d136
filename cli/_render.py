"""Console rendering shared by the commands: the console, spec summaries."""

from __future__ import annotations

import copy
import os
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from tasgen.spec import LoadedSpec
    from tasgen.spec.schema import BackboneSpec, TimmModelSpec

# Piped output (logs, CI) gets 120 columns instead of rich's 80, so tables of plans
# and runs are not cut; a terminal, or $COLUMNS, sets its own width.
console = Console(width=120) if not sys.stdout.isatty() and "COLUMNS" not in os.environ else Console()


def print_table(table: Table, out: Console | None = None) -> None:
    """Print ``table`` whole: no cell is cut to "…" (a number cut short reads as another number).

    A table wider than the console is printed at its own width to a file or a pipe
    (nobody reads those at a fixed width); on a terminal, columns are left out from
    the right until it fits, and a note names them and the width that shows all.

    Args:
        table: the table; its columns should be ``no_wrap`` (cells wrapped by width
            split numbers as readily as cutting them).
        out: where to print; the commands' console by default.
    """
    out = out or console
    needed = _width(out, table)
    if needed <= out.width:
        out.print(table)
        return
    if not out.is_terminal:
        Console(file=out.file, width=needed, color_system=out.color_system).print(table)
        return
    kept = copy.copy(table)
    kept.columns = list(table.columns)
    while len(kept.columns) > 1 and _width(out, kept) > out.width:
        kept.columns.pop()
    if _width(out, kept) > out.width:  # even the first column does not fit: full rows, wrapped by the terminal
        Console(file=out.file, width=needed, color_system=out.color_system).print(table)
        return
    out.print(kept)
    left = [str(c.header) for c in table.columns[len(kept.columns):]]
    out.print(Text(f"(left out for width: {', '.join(left)}; a terminal of {needed} columns, or a pipe, shows them)",
                   style="dim"))


def _width(out: Console, table: Table) -> int:
    """Columns ``table`` takes unconstrained (its title and caption wrap; cells do not)."""
    return Measurement.get(out, out.options.update_width(10**6), table).maximum


def model_text(model: TimmModelSpec | BackboneSpec) -> str:
    """One line naming a model: its timm name, or its stages."""
    timm_name = getattr(model, "timm", None)
    if timm_name is not None:
        text = f"{timm_name} (timm{', pretrained' if model.pretrained else ''})"
    else:
        stages = ", ".join(f"{s.mixer} {s.channels}x{s.depth}" for s in model.stages)
        text = f"backbone: {model.stem.kind} stem {model.stem.channels}, stages {stages}"
    if model.checkpoint is not None:
        text += f" <- {model.checkpoint}"
    return text


def print_valid(path: object, loaded: LoadedSpec) -> None:
    """Say that the spec at ``path`` is valid, then summarise it."""
    console.print(Text.assemble(("valid ", "green"), str(path)))  # Text: no markup in paths
    console.print(spec_summary(loaded))


def spec_summary(loaded: LoadedSpec) -> Table:
    """The few lines that identify an experiment: name, models, method, data."""
    spec = loaded.spec
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("name", spec.name)
    table.add_row("teacher", model_text(spec.teacher))
    table.add_row("student", model_text(spec.student))
    table.add_row("method", spec.distill.method)
    table.add_row(
        "dataset", f"{spec.data.dataset}, {spec.data.image_size}px, batch {spec.data.batch_size}"
    )
    return table
