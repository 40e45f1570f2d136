"""`tasgen teachers`: the fitted teachers of the teacher store, listed or removed (no torch)."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from tasgen_cli._errors import USER_ERROR_EXIT, user_errors

if TYPE_CHECKING:
    from tasgen.teacher_store import TeacherStore


def register(app: typer.Typer) -> None:
    """Add `teachers` to the app."""
    app.command("teachers")(teachers_command)


def teachers_command(
    remove: Annotated[str | None, typer.Option(
        "--remove", metavar="KEY", help="Remove the teacher whose key starts with KEY.", show_default=False)] = None,
    remove_all: Annotated[bool, typer.Option("--remove-all", help="Remove every stored teacher.")] = False,
) -> None:
    """List the fitted teachers that runs and studies share (key, model, data, top-1, size, path, last used), or remove them."""
    from tasgen.teacher_store import TeacherStore

    if remove is not None and remove_all:
        typer.echo("error: give --remove KEY or --remove-all, not both", err=True)
        raise typer.Exit(USER_ERROR_EXIT)
    store = TeacherStore()
    with user_errors(reading_spec=True):
        if remove is not None or remove_all:
            doomed = [store.resolve(remove)] if remove is not None else store.teachers()
            for stored in doomed:
                store.remove(stored)
                typer.echo(f"removed teacher {stored.key} ({stored.entry().get('model', '?')}) from {store.root}")
            if not doomed:
                typer.echo(f"no stored teachers in {store.root}")
            return
    _print_teachers(store)


def _print_teachers(store: TeacherStore) -> None:
    from rich.table import Table

    from tasgen_cli._render import console, print_table

    found = store.teachers()
    if not found:
        console.print(f"no stored teachers in {store.root} (a run that fits its teacher puts it here)")
        return
    table = Table(title=f"teachers in {store.root}")
    for column in ("key", "model", "data", "top-1 %", "size", "path", "last used"):
        # Whole cells (print_table): a key or a path folded by the width is not one to copy.
        table.add_column(column, justify="right" if column in ("top-1 %", "size") else "left", no_wrap=True)
    for stored in found:
        entry = stored.entry()
        top1 = entry.get("teacher_top1")
        used = entry.get("last_used")
        table.add_row(
            stored.key, str(entry.get("model", "?")),
            f"{entry.get('data', '?')}, {entry.get('image_size', '?')}px, seed {entry.get('seed', '?')}",
            f"{top1:.2f}" if isinstance(top1, int | float) else "?",
            f"{stored.size() / 2**20:.1f} MiB", str(stored.weights),
            datetime.datetime.fromtimestamp(used).strftime("%Y-%m-%d %H:%M") if isinstance(used, int | float) else "?",
        )
    print_table(table)
