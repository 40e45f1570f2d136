"""`~` in the paths a user writes (spec fields, `extends:`, the cache variable)."""

from __future__ import annotations

import os
from pathlib import Path


def expand_user(path: str | os.PathLike[str]) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, as the shell does.

    An unknown user's ``~name`` stays as written (``Path.expanduser`` would raise), so
    the path is then simply not found and reported as such.
    """
    return Path(os.path.expanduser(os.fspath(path)))
