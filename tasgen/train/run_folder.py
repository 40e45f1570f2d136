"""The run folder ``<output_dir>/<name>/``: one writer, one commit per epoch, checked inputs.

Layout::

    spec.yaml  plan.json          what the run trains (spec.yaml loads like any spec)
    metrics.jsonl  metrics.csv    one row per epoch: a view of last/metrics.jsonl
    last/  best/                  checkpoints (see tasgen.checkpoint), best/ hard-linked from last/
    .lock                         held by the process training in the folder

An epoch is committed when ``last/`` is renamed into place: its ``metrics.jsonl``
holds the rows up to that epoch, and its manifest the epoch of ``best/``. Everything
else (``best/``, the top-level metrics files) is derived from it, so a crash at any
point is repaired by the next start (`RunFolder.recover`) and loses nothing committed.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from tasgen.checkpoint import (
    MANIFEST_FILE,
    CheckpointError,
    atomic_write_text,
    find_checkpoint,
    link_checkpoint,
    read_manifest,
    recover_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from tasgen.run_metrics import METRICS_FILE, MetricsError, read_metrics

from .errors import TrainError

if TYPE_CHECKING:
    from tasgen.spec.schema import Spec

try:  # POSIX; elsewhere a run folder is not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
STUDY_FILE = "study.json"
"""The file that marks a study folder (``tasgen.study.table.STUDY_FILE``; named here so that
training does not import the study layer above it)."""
_RUN_FILES = ("spec.yaml", "plan.json", "last", "best", METRICS_FILE)
_SPACE_MARGIN = 1.1  # the next checkpoint may be a little larger than the last (optimizer state, rows)
_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
RESULT_NEUTRAL_KEYS = (
    "train.output_dir", "train.loggers", "train.log_interval", "data.num_workers", "assistant.recompute",
    "train.eval_every",
)
"""Spec keys a run's weights and metrics do not depend on: a resume or a study may change them.
(``train.output_dir`` names the folder the run is found in, however it is spelled;
``assistant.recompute`` recomputes frozen stages in eval mode, the same values;
``train.eval_every`` only says after which epochs the same weights are evaluated.)"""
_SHOWN_CHANGES = 6


@dataclass(frozen=True)
class RunFolder:
    """Paths of a run: ``spec.yaml``, ``plan.json``, ``metrics.jsonl``/``.csv``, ``last/``, ``best/``."""

    path: Path
    write_csv: bool = True

    @property
    def last(self) -> Path:
        return self.path / "last"

    @property
    def best(self) -> Path:
        return self.path / "best"

    @property
    def spec_file(self) -> Path:
        return self.path / "spec.yaml"

    @property
    def plan_file(self) -> Path:
        return self.path / "plan.json"

    @property
    def metrics_jsonl(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    # ------------------------------------------------------------ one writer
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's exclusive lock for the ``with`` block.

        The lock is an ``flock`` on ``.lock``: the OS drops it when the process ends,
        however it ends, so a killed run leaves no stale lock behind.

        Raises:
            TrainError: another process holds it (named by its pid), or the folder
                cannot be created.
        """
        self.check_writable()
        if fcntl is None:  # pragma: no cover
            yield
            return
        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
                raise TrainError(
                    f"{self.path} is in use: another tasgen process (pid {holder}) is training in it. "
                    "Wait for it to finish, or give this run another name (--set name=...)."
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock; the file stays (removing it would race a waiting writer)

    def check_writable(self) -> None:
        """Create the folder and write a probe file in it.

        Raises:
            TrainError: the folder cannot be created or written.
        """
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as exc:
            raise TrainError(
                f"cannot write the run folder {self.path}: {exc.strerror or exc}. "
                "Set train.output_dir to a writable folder."
            ) from None

    def check_space(self, need_bytes: int, what: str = "checkpoints", hint: str = "") -> None:
        """Raise a `TrainError` unless the disk has ``need_bytes`` free."""
        free = shutil.disk_usage(self.path).free
        if free < need_bytes:
            raise TrainError(
                f"not enough disk space for {what} in {self.path}: {_mib(free)} free, about "
                f"{_mib(need_bytes)} needed. {hint}Free space, or set train.output_dir elsewhere."
            )

    # ------------------------------------------------------- start and resume
    def recover(self) -> None:
        """Tidy what an interrupted save left: ``*.tmp`` removed, ``*.old`` adopted or removed.

        Call with the lock held. ``best/`` lagging ``last/`` is repaired by `resume_rows`.
        """
        for folder in (self.last, self.best):
            recover_checkpoint(folder)
        if self.path.is_dir():
            for stray in self.path.glob(".*.tmp"):  # files of atomic_path cut short
                stray.unlink(missing_ok=True)

    def leftovers(self) -> list[str]:
        """What a fresh start would remove: the names of an earlier run's checkpoints and metrics."""
        names = ["last", "best", "last.old", "best.old", "last.tmp", "best.tmp", METRICS_FILE, "metrics.csv"]
        found = [name for name in names if (self.path / name).exists()]
        return found + sorted(p.name for p in self.path.glob("spec.until-epoch-*.yaml"))

    def resumable(self) -> Path | None:
        """The checkpoint ``--resume`` continues from: ``last/``, else ``best/`` when ``last/`` is gone.

        ``best/`` is a whole commit of an earlier epoch (weights, training state, its
        rows), so a run whose ``last/`` was deleted resumes from it and trains the
        epochs after it again, to the same weights.
        """
        return find_checkpoint(self.last) or find_checkpoint(self.best)

    def describe(self) -> str:
        """``"finished after epoch 3 of 3"``-style words for the run held in the folder."""
        found = self.resumable()
        with contextlib.suppress(CheckpointError):
            if found is not None:
                manifest = read_manifest(found)
                epoch, epochs = manifest.get("epoch"), manifest.get("epochs")
                if isinstance(epoch, int) and isinstance(epochs, int):
                    if find_checkpoint(self.last) is None:
                        return f"a run whose last/ is gone; its best/ holds epoch {epoch} of {epochs}"
                    state = "finished" if epoch >= epochs else "stopped"
                    return f"a run {state} after epoch {epoch} of {epochs}"
        return "an earlier run"

    def recorded_spec(self) -> dict[str, Any]:
        """The spec the run was trained with, as ``spec.yaml`` records it (JSON values).

        Raises:
            TrainError: the folder has no ``spec.yaml``.
            SpecError: it does not load (located).
        """
        return self._recorded().model_dump(mode="json")

    def _recorded(self) -> Spec:
        from tasgen.spec.load import load_run_spec

        if not self.spec_file.is_file():
            raise TrainError(f"{self.path} lacks spec.yaml, the record of what its checkpoints were trained with: "
                             "restore it, or start the run over with --overwrite")
        return load_run_spec(self.spec_file).spec

    def spec_changes(self, spec: Spec, *, teacher_fit: bool = False) -> list[tuple[str, Any, Any]]:
        """``(key, recorded, now)`` for every key whose value in ``spec`` differs from ``spec.yaml``.

        Keys in `RESULT_NEUTRAL_KEYS` are left out, and so are the ``distill`` keys when
        both specs train the same objective (`tasgen.planner.objective_record`): a run
        recorded before a default of a method it does not use changed is the same run.
        What the run trained is read from its ``plan.json`` where that records it: a spec
        that reads the same but whose defaults now resolve to another objective (kd's
        ``temperature: auto`` was T 4 before it was chosen from the teacher) changes the
        run, as ``objective.<key>`` entries.
        A ``teacher_fit`` (CE on the labels alone) reads only ``distill.ce.label_smoothing``
        of ``distill``, as the teacher store's key does.

        Raises:
            TrainError, SpecError: see `recorded_spec`.
        """
        from tasgen.planner import objective_record, planned_objective

        recorded = self._recorded()
        now = spec.model_dump(mode="json")
        now.pop("extends", None)  # resolved already: spec.yaml holds the merged values
        changes = [c for c in spec_changes(recorded.model_dump(mode="json"), now) if c[0] not in RESULT_NEUTRAL_KEYS]
        if teacher_fit:
            return [c for c in changes if not c[0].startswith("distill.") or c[0] == "distill.ce.label_smoothing"]
        plan = self._plan()
        roles = _roles(plan)  # ``distill.feature.loss: auto`` is read through them
        trained = planned_objective(plan) if roles is not None else None
        before = trained if trained is not None else objective_record(recorded.distill, roles)
        after = objective_record(spec.distill, roles)
        if before is None or after is None:  # a method whose plugin is missing: the spec keys decide
            return changes
        if before == after:
            # The same objective: keys of distill its method does not read, or spelled otherwise
            # (temperature auto against the number it resolves to), do not change the run.
            return [c for c in changes if not c[0].startswith("distill.")]
        if not any(c[0].startswith("distill.") for c in changes):  # the same spec, another objective now
            changes += spec_changes(before, after, "objective.")
        return changes

    def _plan(self) -> dict[str, Any]:
        """The recorded ``plan.json``, or an empty dict when there is none or it does not read."""
        try:
            plan = json.loads(self.plan_file.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):  # altered beyond reading: compared on the spec
            return {}
        return plan if isinstance(plan, dict) else {}

    def start_fresh(self, spec_yaml: str, plan_json: str, *, overwrite: bool) -> list[str]:
        """Write the run's inputs; remove an earlier run only when ``overwrite``.

        Returns:
            The names removed.

        Raises:
            TrainError: the folder holds a run and ``overwrite`` is off; the message
                lists what ``--overwrite`` would remove.
        """
        found = self.leftovers()
        if found and not overwrite:
            raise TrainError(
                f"{self.path} holds {self.describe()}. --resume continues it; --overwrite starts over "
                f"and removes {', '.join(found)}; or give this run another name (--set name=...)."
            )
        for name in found:
            path = self.path / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        atomic_write_text(self.spec_file, spec_yaml)
        atomic_write_text(self.plan_file, plan_json)
        return found

    def record_changed_spec(self, spec_yaml: str, epoch: int) -> Path:
        """Make ``spec_yaml`` the run's record, keeping the one it replaces as ``spec.until-epoch-<epoch>.yaml``.

        Returns:
            The kept file.
        """
        kept = self.path / f"spec.until-epoch-{epoch}.yaml"
        atomic_write_text(kept, self.spec_file.read_text(encoding="utf-8"))
        atomic_write_text(self.spec_file, spec_yaml)
        return kept

    def repair(self, found: Path, manifest: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """Make the folder agree with the resumed checkpoint ``found`` and its metrics ``rows``.

        ``best/`` is relinked when it lags the checkpoint's best epoch (a crash between
        the commit of ``last/`` and the copy to ``best/``); the top-level metrics files
        are rewritten to exactly these rows.
        """
        epoch, best_epoch = manifest.get("epoch"), manifest.get("best_epoch")
        if epoch is not None and best_epoch == epoch and _epoch_of(self.best) != epoch:
            link_checkpoint(found, self.best)
        text = _jsonl(rows)
        current = self.metrics_jsonl.read_text(encoding="utf-8") if self.metrics_jsonl.is_file() else None
        if current != text or (self.write_csv and not self.metrics_csv.is_file()):
            self.write_metrics(rows)

    # -------------------------------------------------------------- the commit
    def commit_epoch(
        self,
        parts: dict[str, dict[str, torch.Tensor]],
        state: dict[str, Any],
        meta: dict[str, str],
        rows: list[dict[str, Any]],
        *,
        improved: bool,
        estimate: int,
    ) -> int:
        """Make an epoch durable: ``last/`` (with the rows), then ``best/`` when improved, then the metrics view.

        Args:
            parts: weights by prefix.
            state: the training state; ``epoch``, ``epochs``, ``best_epoch`` go to the manifest too.
            meta: strings for the safetensors header.
            rows: every metrics row up to this epoch.
            improved: whether this epoch is the new best.
            estimate: bytes the checkpoint is expected to take.

        Returns:
            The bytes the checkpoint took (the next epoch's estimate).

        Raises:
            TrainError: not enough disk space, or the write failed; the last good
                checkpoint is kept and nothing is left that blocks ``--resume``.
        """
        epoch = state["epoch"]
        hint = (f"The last good checkpoint (epoch {epoch - 1}) stays in {self.last}; continue with --resume. "
                if epoch > 1 else "No checkpoint was written. ")
        self.check_space(int(estimate * _SPACE_MARGIN), f"the checkpoint of epoch {epoch}", hint)
        info = {key: state[key] for key in ("epoch", "epochs", "best_epoch") if key in state}
        written = 0
        try:
            written = save_checkpoint(self.last, parts, state, meta, files={METRICS_FILE: _jsonl(rows)}, info=info)
            if improved:
                link_checkpoint(self.last, self.best)
            self.write_metrics(rows)
        except OSError as exc:
            if written:  # last/ holds this epoch; best/ and the metrics files are repaired by --resume
                hint = f"Epoch {epoch} is saved in {self.last}; --resume completes best/ and the metrics files. "
            if exc.errno in _OUT_OF_SPACE:
                raise TrainError(f"the disk ran out of space while saving epoch {epoch} to {self.path}. {hint}"
                                 "Free space, then continue.") from None
            raise TrainError(f"could not save epoch {epoch} to {self.path}: {exc.strerror or exc}. {hint}") from None
        return written

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` and ``metrics.csv`` (each atomically) to exactly ``rows``.

        ``write_csv = False`` (``csv`` not in ``train.loggers``) keeps only the JSONL file.
        """
        atomic_write_text(self.metrics_jsonl, _jsonl(rows))
        if not self.write_csv:
            return
        columns = list(dict.fromkeys(k for r in rows for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_csv, out.getvalue())

    # ------------------------------------------------------------ for readers
    def checkpoint(self, which: str = "best") -> Path:
        """The verified checkpoint folder ``best`` or ``last`` (falling back to the other one).

        ``best`` is read from ``last/`` when ``last/`` holds the best epoch but ``best/``
        does not yet (a crash between the two writes of one commit).

        Raises:
            TrainError: no checkpoint at all.
            CheckpointError: the checkpoint fails its integrity check.
        """
        last, best = find_checkpoint(self.last), find_checkpoint(self.best)
        if which == "last":
            found = last or best
        else:
            found = best or last
            if best is not None and last is not None:
                with contextlib.suppress(CheckpointError):
                    manifest = read_manifest(last)
                    if manifest.get("best_epoch") == manifest.get("epoch") != _epoch_of(best):
                        found = last
        if found is None:
            raise TrainError(f"{self.path} has no checkpoint yet (no best/ or last/)")
        verify_checkpoint(found)
        return found


def read_rows(checkpoint: Path) -> list[dict[str, Any]]:
    """The metrics rows a checkpoint holds (none for checkpoints without them)."""
    try:
        return read_metrics(checkpoint / METRICS_FILE, strict=True)  # its manifest vouches for every row
    except MetricsError as exc:
        raise CheckpointError(str(exc)) from None


def check_outside_runs(targets: list[Path], source: Path) -> None:
    """Refuse to write over a file of a run folder (any run's, not only ``source``'s).

    Each target is resolved (``..`` and symlinks, the last component too: writers follow
    it) before it is placed. Refused: an existing file inside a folder tasgen trained in
    (it holds ``.lock``, or ``spec.yaml`` and ``plan.json``) or a study folder; anything
    inside a checkpoint folder (it holds ``manifest.json`` and is replaced whole by the
    next commit); a hard link to one of ``source``'s files.

    Args:
        targets: the files an export would write.
        source: the run folder exported from.

    Raises:
        TrainError: naming the target, the file it would overwrite, and the run.
    """
    own = {(s.st_dev, s.st_ino) for s in (f.stat() for f in source.rglob("*") if f.is_file())}
    for target in targets:
        real = Path(os.path.realpath(target))
        owner = next((p for p in (real, *real.parents) if _is_run_folder(p)), None)
        exists = real.is_file() or real.is_dir()
        linked = real.is_file() and (real.stat().st_dev, real.stat().st_ino) in own
        checkpoint_folder = (real.parent / MANIFEST_FILE).is_file()
        if (owner is not None and exists) or checkpoint_folder or linked:
            where = owner or source
            what = (f"it would replace {real}, a file of the run folder {where} (eval, export and --resume rely "
                    "on its files)" if exists else
                    f"it would go into the checkpoint folder {real.parent} of {where}, which the next epoch replaces whole")
            raise TrainError(f"refusing to write {target}: {what}. Write the export outside the run folders, "
                             "e.g. -o student.safetensors.")


def _is_run_folder(folder: Path) -> bool:
    """A folder tasgen trained in or wrote a study to: its files belong to the run.

    ``.lock`` alone is not enough: other tools name their lock files so too (pytest's
    numbered temporary folders hold one); a run's lock goes with one of its files.
    """
    if (folder / STUDY_FILE).is_file() or ((folder / "spec.yaml").is_file() and (folder / "plan.json").is_file()):
        return True
    return (folder / LOCK_FILE).is_file() and any((folder / name).exists() for name in _RUN_FILES)


def spec_changes(before: Any, now: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, before, now)`` for every leaf that differs between two spec dumps."""
    if isinstance(before, dict) and isinstance(now, dict):
        keys = list(dict.fromkeys([*before, *now]))
        return [c for key in keys for c in spec_changes(before.get(key), now.get(key), f"{path}{key}.")]
    return [(path.rstrip("."), before, now)] if before != now else []


def describe_changes(changes: list[tuple[str, Any, Any]]) -> str:
    """``"train.epochs (1 -> 30), train.optimizer.lr (0.05 -> 0.01)"``: the first few changes, values shortened."""
    def value(v: Any) -> str:
        text = "unset" if v is None else json.dumps(v)
        return text if len(text) <= 40 else text[:37] + "..."

    shown = [f"{key} ({value(before)} -> {value(now)})" for key, before, now in changes[:_SHOWN_CHANGES]]
    more = len(changes) - _SHOWN_CHANGES
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _epoch_of(folder: Path) -> int | None:
    found = find_checkpoint(folder)
    if found is None or not (found / MANIFEST_FILE).is_file():
        return None
    try:
        return read_manifest(found).get("epoch")
    except CheckpointError:
        return None


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _roles(plan: dict[str, Any]) -> tuple[str, str] | None:
    """The recorded plan's pair kind and local role, or None when it does not say.

    A change of teacher or student is a change of the run in itself, so the recorded
    roles are the ones both specs are compared under.
    """
    roles = (plan.get("pair"), plan.get("local_role"))
    return roles if all(isinstance(r, str) for r in roles) else None  # type: ignore[return-value]
