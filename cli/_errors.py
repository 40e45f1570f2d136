"""How a command ends on bad input: its message on stderr, exit code 2, never a traceback.

Every command runs the library inside `user_errors`. Spec problems print one
``file:line:col: path: message`` line each; the commands that run training prefix
them with ``error:`` like their other errors, the commands that only read a spec
(validate, plan, emit, bench) print them bare, the form editors jump to.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from tasgen.spec import SpecError

USER_ERROR_EXIT = 2
RESUME_RUN = "continue with `tasgen train SPEC --resume`"
RERUN_STUDY = ("re-run the same command to finish: finished runs are kept, and the interrupted ones "
               "resume from their last epoch")


@contextlib.contextmanager
def user_errors(*, reading_spec: bool = False, on_interrupt: str = RESUME_RUN) -> Iterator[None]:
    """Turn the library's errors a person can fix into their message and exit 2.

    Args:
        reading_spec: the command only reads the spec: its problems print bare, and
            Ctrl-C is not a run to resume.
        on_interrupt: what Ctrl-C tells the user to do next (the command's own way to continue).
    """
    try:
        yield
    except KeyboardInterrupt:
        if reading_spec:
            raise
        typer.echo(f"interrupted; {on_interrupt}", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        from tasgen.output import OutputError
        from tasgen.spec.errors import SpecError
        from tasgen.teacher_store import TeacherStoreError

        # These first: `validate`, `schema` and `teachers` must not import torch, which the other types do.
        if not isinstance(exc, SpecError | OutputError | TeacherStoreError) and not isinstance(exc, _user_error_types()):
            raise
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: say it once
            if isinstance(exc, SpecError):
                print_problems(exc, "" if reading_spec else "error: ")
            else:
                typer.echo(f"error: {_message(exc)}", err=True)
        raise typer.Exit(USER_ERROR_EXIT) from None


def say_created(folders: Sequence[Path]) -> None:
    """Say which folders a command created for its output (`tasgen.output.missing_folders`, asked before)."""
    for folder in folders:
        if folder.is_dir():
            typer.echo(f"created folder {folder}", err=True)


@contextlib.contextmanager
def reported_warnings() -> Iterator[None]:
    """Show the library's warnings about a run's files as ``warning: ...`` lines on stderr, as they come.

    They name a file and say what to do; Python's default format would add a source
    line of tasgen's own that means nothing to the user. Other warnings show as before.
    """
    from tasgen.run_metrics import MetricsWarning

    shown = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        if issubclass(category, MetricsWarning):
            typer.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, *args, **kwargs)  # type: ignore[arg-type]

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def print_problems(err: SpecError, prefix: str = "") -> None:
    """Write one ``file:line:col: path: message`` line per problem of a `SpecError` to stderr.

    Plain writes, not rich: a wrapped or styled line would break editors and grep
    that jump to ``file:line:col``.
    """
    for problem in err.problems:
        sys.stderr.write(f"{prefix}{problem}\n")
    sys.stderr.flush()


def _user_error_types() -> tuple[type[Exception], ...]:
    # Imported when an error happens: the library's modules are heavy, the CLI's start is not.
    from tasgen.checkpoint import CheckpointError
    from tasgen.data import DataError
    from tasgen.run_metrics import MetricsError
    from tasgen.study.table import StudyError
    from tasgen.train.errors import TrainError

    return CheckpointError, DataError, MetricsError, StudyError, TrainError


def _message(exc: Exception) -> str:
    """The user's words of an error; a DataLoader worker's copy carries the worker's traceback."""
    text = str(exc)
    if "Original Traceback" in text:  # re-raised by torch's DataLoader: "...\nModule.DataError: message"
        last = text.strip().splitlines()[-1]
        text = last.split(f"{type(exc).__name__}: ", 1)[-1]
    return text
