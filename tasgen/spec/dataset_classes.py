"""The class count of a spec's dataset, read from its files without building it (and without torch).

The planner needs the classifier width before any dataset is built; a spec's
``num_classes`` always wins.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

from tasgen.spec.schema import DataSpec

from .home import expand_user

__all__ = ["BUILTIN_CLASSES", "count_classes"]

BUILTIN_CLASSES = {"digits": 10, "mnist5k": 10, "synthetic": 10, "cifar10": 10, "cifar100": 100}
_TRAIN_NAMES = ("train", "training")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm"}


def count_classes(data: DataSpec) -> tuple[int | None, str]:
    """``(count, where)``: the dataset's class count (None when the files do not say) and what was read."""
    if data.dataset in BUILTIN_CLASSES:
        return BUILTIN_CLASSES[data.dataset], data.dataset
    if data.dataset == "imagefolder":
        return _folder_classes(expand_user(data.root or "."), data.train_split)
    if data.dataset == "wds":
        root = expand_user(data.root or ".")
        for name in ("_info.json", "info.json"):
            try:
                info = json.loads((root / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            count = info.get("num_classes") if isinstance(info, dict) else None
            return (count if isinstance(count, int) else None), str(root / name)
        return None, f"{root}/_info.json"
    return _hf_classes(data)


def _folder_classes(root: Path, split: str) -> tuple[int | None, str]:
    for name in dict.fromkeys((split, *(_TRAIN_NAMES if split in _TRAIN_NAMES else ()))):
        folder, tar = root / name, root / f"{name}.tar"
        if folder.is_dir():
            classes = [p for p in folder.iterdir() if p.is_dir()]
            return (len(classes) if len(classes) >= 2 else None), str(folder)
        if tar.is_file():
            try:
                with tarfile.open(tar) as archive:
                    classes = {Path(m.name).parts[0] for m in archive.getmembers()
                               if m.isfile() and len(Path(m.name).parts) > 1
                               and Path(m.name).suffix.lower() in _IMAGE_SUFFIXES}
            except (OSError, tarfile.TarError):
                return None, str(tar)
            return (len(classes) if len(classes) >= 2 else None), str(tar)
    return None, str(root / split)


def _hf_classes(data: DataSpec) -> tuple[int | None, str]:
    """The ``label`` ClassLabel of a Hugging Face dataset's features (a local folder's are inferred)."""
    where = f"hfds {data.name}"
    try:
        import datasets
    except ImportError:
        return None, where
    name = str(expand_user(data.name or "").resolve()) if expand_user(data.name or "").exists() else data.name
    try:
        builder = datasets.load_dataset_builder(name, cache_dir=str(data.root) if data.root else None)
        features = builder.info.features
        if features is None:  # packaged builders (parquet) learn their features when preparing
            builder.download_and_prepare()
            features = builder.info.features
    except Exception:  # noqa: BLE001 - no network, no such dataset: the caller asks for num_classes
        return None, where
    label = (features or {}).get("label")
    return (label.num_classes if isinstance(label, datasets.ClassLabel) else None), where
