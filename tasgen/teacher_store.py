"""The teacher store: a fitted teacher kept once, keyed by what determines its weights.

A teacher fitted by `tasgen train` (or a study) is written to
``<cache_dir>/teachers/<key>/`` rather than into one run's folder, so every run and
every study whose teacher fit would be the same reuses it, whatever their name or
output folder::

    teachers/<key>/teacher.safetensors   the weights (their metadata records the split)
    teachers/<key>/teacher.json          what it is: model, data, seed, top-1, last used
    teachers/<key>/teacher/              the fit's run folder: metrics, last/ and best/
    teachers/<key>.lock                  held by the process fitting it

The key is a hash of the resolved spec fields that change the fitted weights (the
teacher's model spec, the class count, the data and its split, the seed, the fit's
recipe) and of `STORE_FORMAT`; never of the run's name or output folder.

This module imports no torch: `tasgen teachers` lists and removes without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasgen.spec._timm_names import cache_dir
from tasgen.spec.schema import Spec

try:  # POSIX; elsewhere the store is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

STORE_FORMAT = 1
"""Version of the stored weights' layout; a change makes every earlier key miss."""

WEIGHTS_FILE = "teacher.safetensors"
ENTRY_FILE = "teacher.json"
FIT_DIR = "teacher"

WEAK_TEACHER_SHARE = 0.25
"""A teacher is weak when its top-1 covers less than this share of the way from chance to 100 %."""

# The data fields a teacher fit depends on; loader workers, eval batch size, the
# student's small-data budget (the teacher always sees the whole split) and
# permission to download do not change the weights.
_DATA_FIELDS = (
    "dataset", "name", "root", "train_split", "eval_split", "streaming", "image_size", "batch_size",
    "eval_fraction", "val_fraction", "split_seed", "num_samples", "augment",
)
# EMA, compile, memory format and logging leave the stored (raw, last-epoch) weights as they are.
_TRAIN_FIELDS = ("optimizer", "schedule", "precision", "grad_clip", "accumulate", "sync_bn")


class TeacherStoreError(Exception):
    """A store operation a person asked for cannot be done (unknown key, teacher in use)."""


def teacher_key(spec: Spec, num_classes: int) -> str:
    """The store key of the teacher ``spec`` fits: 16 hex digits.

    Args:
        spec: the resolved spec (paths absolute, as `load_spec` returns them).
        num_classes: the classes the teacher's head predicts (the plan's count).
    """
    return hashlib.sha256(json.dumps(teacher_fit_fields(spec, num_classes), sort_keys=True).encode()).hexdigest()[:16]


def teacher_fit_fields(spec: Spec, num_classes: int) -> dict[str, Any]:
    """The resolved spec fields that determine a fitted teacher's weights (what the key hashes)."""
    data = spec.data.model_dump(mode="json", include=set(_DATA_FIELDS))
    train = spec.train.model_dump(mode="json", include=set(_TRAIN_FIELDS))
    return {
        "format": STORE_FORMAT,
        "teacher": spec.teacher.model_dump(mode="json"),
        "num_classes": num_classes,
        "seed": spec.seed,
        "data": data,
        "train": train,
        "epochs": spec.train.teacher_epochs or spec.train.epochs,
        "label_smoothing": spec.distill.ce.label_smoothing,
    }


def weak_teacher_message(top1: float, num_classes: int) -> str | None:
    """A warning when a teacher's top-1 (%) is barely above chance, else None.

    Chance is ``100 / num_classes``; a teacher is weak below
    ``chance + WEAK_TEACHER_SHARE * (100 - chance)`` (32.5 % on 10 classes, 25.75 % on 100).
    """
    chance = 100.0 / num_classes
    floor = chance + WEAK_TEACHER_SHARE * (100.0 - chance)
    if top1 >= floor:
        return None
    return (
        f"the teacher reaches only {top1:.2f}% top-1 on {num_classes} classes (chance {chance:.2f}%, "
        f"a usable teacher at least {floor:.2f}%): distilling from it teaches the student little. "
        "Fit it longer (train.teacher_epochs), or give trained weights (teacher.checkpoint)."
    )


@dataclass(frozen=True)
class StoredTeacher:
    """One teacher of the store (present or still to be fitted)."""

    key: str
    folder: Path

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS_FILE

    @property
    def entry_file(self) -> Path:
        return self.folder / ENTRY_FILE

    @property
    def fit_dir(self) -> Path:
        """The fit's run folder (metrics and checkpoints)."""
        return self.folder / FIT_DIR

    @property
    def exists(self) -> bool:
        return self.weights.is_file()

    def entry(self) -> dict[str, Any]:
        """What ``teacher.json`` records (empty when unreadable)."""
        try:
            entry = json.loads(self.entry_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return entry if isinstance(entry, dict) else {}

    def size(self) -> int:
        """Bytes of the weights, 0 when absent."""
        try:
            return self.weights.stat().st_size
        except OSError:
            return 0


class TeacherStore:
    """The fitted teachers under ``root`` (default: ``<cache_dir>/teachers``).

    Args:
        root: the store's folder; by default ``$TASGEN_TEACHER_STORE`` when set (every
            process of a run, study workers and torchrun ranks included, reads the same
            variable), else ``$TASGEN_CACHE_DIR/teachers`` or ``~/.cache/tasgen/teachers``.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get("TASGEN_TEACHER_STORE") or cache_dir() / "teachers"
        self.root = Path(root)

    def teacher(self, key: str) -> StoredTeacher:
        """The store's place for the teacher of ``key`` (it may not exist yet)."""
        return StoredTeacher(key, self.root / key)

    @contextlib.contextmanager
    def lock(self, key: str, waiting: Callable[[str], None] | None = None) -> Iterator[None]:
        """Hold the teacher's lock: one process fits a teacher, the others wait and reuse it.

        An ``flock``, dropped by the OS however the holder ends.

        Args:
            waiting: called with a message when another process holds the lock.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(self.root / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                if waiting is not None:
                    waiting(f"another tasgen process (pid {holder}) is fitting this teacher; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def record(self, key: str, entry: dict[str, Any]) -> None:
        """Write the teacher's ``teacher.json`` (atomically), stamping its last use."""
        from tasgen.checkpoint import atomic_write_text  # torch: only a fit records

        stored = self.teacher(key)
        now = time.time()
        entry = {"key": key, "created": now, **entry, "last_used": now}
        atomic_write_text(stored.entry_file, json.dumps(entry, indent=2, sort_keys=True) + "\n")

    def touch(self, key: str) -> None:
        """Stamp the teacher's last use (a run reused it)."""
        stored = self.teacher(key)
        entry = stored.entry()
        if entry:
            with contextlib.suppress(OSError):  # a read-only store still serves its teachers
                self.record(key, entry)

    def teachers(self) -> list[StoredTeacher]:
        """Every stored teacher with weights, the most recently used first."""
        if not self.root.is_dir():
            return []
        found = [self.teacher(p.name) for p in self.root.iterdir() if p.is_dir() and (p / WEIGHTS_FILE).is_file()]
        return sorted(found, key=lambda t: -float(t.entry().get("last_used", 0) or 0))

    def resolve(self, prefix: str) -> StoredTeacher:
        """The one stored teacher whose key starts with ``prefix``.

        Raises:
            TeacherStoreError: none, or more than one.
        """
        matches = [t for t in self.teachers() if t.key.startswith(prefix)] if prefix else []
        if not matches:
            raise TeacherStoreError(f"no stored teacher has a key starting with {prefix!r}; "
                                    "`tasgen teachers` lists them")
        if len(matches) > 1:
            raise TeacherStoreError(f"{prefix!r} starts {len(matches)} keys ({', '.join(t.key for t in matches)}); "
                                    "give more of the key")
        return matches[0]

    def remove(self, stored: StoredTeacher) -> None:
        """Delete a teacher: its weights, entry and fit.

        Runs distilled from it keep their checkpoints; evaluating them needs the teacher
        again (the next run of the same spec fits it anew).

        Raises:
            TeacherStoreError: a process is fitting it now.
        """
        lock = self.root / f"{stored.key}.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644) if fcntl is not None else None
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise TeacherStoreError(f"teacher {stored.key} is being fitted by another process; "
                                            "remove it once that run ends") from None
            # The weights go first: a half-removed folder is then never taken for a teacher.
            stored.weights.unlink(missing_ok=True)
            shutil.rmtree(stored.folder, ignore_errors=True)
        finally:
            if fd is not None:
                os.close(fd)
