"""Where commands write: one policy for every file and folder a tasgen command writes.

``export``, ``schema -o``, ``emit -o``, ``plan --format svg|png``, ``study -o`` and
``search -o`` all go through this module:

- a folder missing on the way is created (the command says which);
- an existing file is kept unless overwriting is asked for (``--overwrite``), and a
  folder is never replaced by a file;
- a folder output (a timm model folder) that holds files is kept unless overwriting
  is asked for; a resumable folder (a study, a search) that exists is continued;
- a place that cannot be written (read-only, not yours, a file where a folder should
  be, a full disk) is one sentence naming the path and the reason;
- a file is written under a temporary name beside it and renamed over it when
  complete, so an interrupted write or a failed check leaves the old file (or none),
  never half of one.

No torch here: ``tasgen schema`` writes through it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

__all__ = ["OutputError", "check_output", "missing_folders", "prepare_output", "write_text", "written_file"]

Kind = Literal["file", "folder"]


class OutputError(Exception):
    """A command's output path cannot be written under the policy above."""


def missing_folders(path: str | os.PathLike[str], *, kind: Kind = "file") -> list[Path]:
    """The folders writing ``path`` creates, outermost first (a folder output counts itself)."""
    target = Path(path)
    missing = []
    folder = target if kind == "folder" else target.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing[::-1]


def check_output(
    path: str | os.PathLike[str], *, kind: Kind = "file", overwrite: bool = False, resumable: bool = False
) -> Path:
    """Refuse an output path the policy does not allow; change nothing on disk.

    Args:
        path: the file or folder to write.
        kind: "file" or "folder".
        overwrite: an existing file (or a folder's files of the same names) may be replaced.
        resumable: an existing folder output is continued (a study), not refused.

    Returns:
        ``path`` as a Path.

    Raises:
        OutputError: what is in the way, and what to do.
    """
    target = Path(path)
    if kind == "file" and target.is_dir():
        raise OutputError(f"{target} is a folder; give the path of the file to write (a new name, or a file inside it)")
    if kind == "folder" and target.exists() and not target.is_dir():
        raise OutputError(f"{target} is a file, and this output is a folder; name a folder that does not exist yet "
                          "(or an empty one)")
    if kind == "file" and target.exists() and not overwrite:
        raise OutputError(f"{target} exists; --overwrite replaces it, or write to another path")
    if kind == "folder" and target.is_dir() and not (overwrite or resumable) and any(target.iterdir()):
        raise OutputError(f"{target} exists and holds files; --overwrite writes over the files of the same names, "
                          "or name a new folder")
    existing = target.absolute().parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {target}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(_cannot_write(target, OSError(errno.EACCES, os.strerror(errno.EACCES)), existing))
    return target


def prepare_output(
    path: str | os.PathLike[str], *, kind: Kind = "file", overwrite: bool = False, resumable: bool = False
) -> Path:
    """`check_output`, then create the missing folders (a folder output: itself too).

    Raises:
        OutputError: refused by the policy, or a folder cannot be created.
    """
    target = check_output(path, kind=kind, overwrite=overwrite, resumable=resumable)
    folder = target if kind == "folder" else target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(_cannot_write(target, exc)) from None
    return target


@contextlib.contextmanager
def written_file(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Prepare ``path`` and yield a temporary path beside it; the file becomes ``path`` when the block ends.

    Write the file to the yielded path (keeping any format argument explicit: its
    name does not end like ``path``). An exception in the block leaves ``path`` as it
    was; an OSError there (a full disk, a read-only place) becomes an OutputError.

    Raises:
        OutputError: refused by the policy, or the file cannot be written.
    """
    target = prepare_output(path, kind="file", overwrite=overwrite)
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        yield staged
        os.replace(staged, target)
    except OSError as exc:
        raise OutputError(_cannot_write(target, exc)) from None
    finally:
        with contextlib.suppress(OSError):
            staged.unlink()


def write_text(path: str | os.PathLike[str], text: str, *, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` under the policy; returns ``path``."""
    with written_file(path, overwrite=overwrite) as staged:
        staged.write_text(text, encoding="utf-8")
    return Path(path)


def _cannot_write(target: Path, exc: OSError, folder: Path | None = None) -> str:
    where = folder or target.parent
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {target}: {where} is read-only or not yours ({exc.strerror}); write elsewhere"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {target}: no space left on its disk ({exc.strerror}); free space or write elsewhere"
    return f"cannot write {target}: {exc.strerror or exc}"
