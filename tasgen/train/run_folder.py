"""The run folder ``<output_dir>/<name>/``: its files, checked before training starts."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasgen.checkpoint import atomic_write_text

from .errors import TrainError


@dataclass(frozen=True)
class RunFolder:
    """Paths of a run: ``spec.yaml``, ``plan.json``, ``metrics.jsonl``/``.csv``, ``last/``, ``best/``."""

    path: Path

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
        return self.path / "metrics.jsonl"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

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

    def check_space(self, need_bytes: int) -> None:
        """Raise a `TrainError` unless the disk has ``need_bytes`` free."""
        free = shutil.disk_usage(self.path).free
        if free < need_bytes:
            raise TrainError(
                f"not enough disk space for checkpoints in {self.path}: {_mib(free)} free, about "
                f"{_mib(need_bytes)} needed (last/ and best/ and a temporary copy). Free space or "
                "set train.output_dir elsewhere."
            )

    def start_fresh(self, spec_yaml: str, plan_json: str) -> None:
        """Write the run's inputs and remove what an earlier run of the same name left."""
        for name in ("last", "best", "last.tmp", "best.tmp", "last.old", "best.old"):
            shutil.rmtree(self.path / name, ignore_errors=True)
        for file in (self.metrics_jsonl, self.metrics_csv):
            file.unlink(missing_ok=True)
        atomic_write_text(self.spec_file, spec_yaml)
        atomic_write_text(self.plan_file, plan_json)


class MetricsLog:
    """One row per epoch, kept as ``metrics.jsonl`` and ``metrics.csv``.

    Both files are rewritten atomically after each epoch (they are small), so they
    never hold half a row and always agree with each other. ``write_csv = False``
    (``csv`` not in ``train.loggers``) keeps only the JSONL file.
    """

    write_csv = True

    def __init__(self, folder: RunFolder, rows: list[dict[str, Any]] | None = None) -> None:
        self.folder = folder
        self.rows = list(rows or [])

    @classmethod
    def resume(cls, folder: RunFolder, epochs_done: int) -> MetricsLog:
        """The rows of epochs 1..epochs_done (later rows belong to epochs being redone)."""
        rows = []
        if folder.metrics_jsonl.is_file():
            for line in folder.metrics_jsonl.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if row.get("epoch", 0) <= epochs_done:
                        rows.append(row)
        return cls(folder, rows)

    def append(self, row: dict[str, Any]) -> None:
        """Add a row and rewrite both files."""
        self.rows.append(row)
        atomic_write_text(self.folder.metrics_jsonl, "".join(json.dumps(r) + "\n" for r in self.rows))
        if not self.write_csv:
            return
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.folder.metrics_csv, out.getvalue())


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
