"""On-disk cache of stage tables, so re-planning an edited spec needs no torch.

Keyed by everything a table depends on: the model description, the class count,
the image size, and the versions of timm, tasgen and the table format. Reading a
cached table imports neither torch nor timm.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from importlib import metadata

from tasgen import __version__
from tasgen.arch.table import StageTable
from tasgen.spec._timm_names import cache_dir  # one folder for every cache, `~` expanded


def _timm_version() -> str:
    try:
        return metadata.version("timm")
    except metadata.PackageNotFoundError:
        return "none"


def table_key(model: dict, num_classes: int, image_size: int) -> str:
    """A content key for the stage table of `model` (a JSON-able model spec)."""
    blob = json.dumps(
        {"model": model, "num_classes": num_classes, "image_size": image_size,
         "timm": _timm_version(), "tasgen": __version__, "table": StageTable.model_fields["version"].default},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def load_table(key: str) -> StageTable | None:
    path = cache_dir() / "tables" / f"{key}.json"
    try:
        return StageTable.model_validate_json(path.read_text())
    except (OSError, ValueError):
        return None  # a missing or stale entry is simply recomputed


def store_table(key: str, table: StageTable) -> None:
    folder = cache_dir() / "tables"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(table.model_dump_json())
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass  # a read-only cache only costs time
