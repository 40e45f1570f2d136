"""The class count of a spec's dataset, read from its files without building it (and without torch).

The planner needs the classifier width before any dataset is built; a spec's
``num_classes`` always wins.
"""

from __future__ import annotations

import json
from pathlib import Path

from tasgen.spec.schema import DataSpec

from .home import expand_user
from .hub import HubUnreachable, hub_problem, unreachable_message
from .image_folder import ImageFolderError, find_split, scan_class_folders, tar_classes

__all__ = ["BUILTIN_CLASSES", "DatasetNotFound", "count_classes"]

BUILTIN_CLASSES = {"digits": 10, "mnist5k": 10, "synthetic": 10, "cifar10": 10, "cifar100": 100}


class DatasetNotFound(ValueError):
    """The dataset ``data.name`` names does not exist (a local folder, or a Hub id)."""


def count_classes(data: DataSpec) -> tuple[int | None, str]:
    """``(count, where)``: the dataset's class count (None when the files do not say) and what was read.

    Raises:
        ImageFolderError: an image folder's training split holds a symlink cycle.
        HubUnreachable: a Hugging Face Hub dataset, and the Hub cannot be reached.
        DatasetNotFound: no such Hugging Face dataset (local folder or Hub id).
    """
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
    """The classes timm's reader will see in the training split (see `tasgen.spec.image_folder`).

    Raises:
        ImageFolderError: the split folder holds a symlink cycle or cannot be listed.
    """
    found = find_split(root, split)
    if found is None:
        return None, str(root / split)
    if found.is_dir():
        count = len(scan_class_folders(found).class_to_idx)
    else:
        try:
            count = len(tar_classes(found))
        except ImageFolderError:
            return None, str(found)
    return (count if count >= 2 else None), str(found)


def _hf_classes(data: DataSpec) -> tuple[int | None, str]:
    """The ``label`` ClassLabel of a Hugging Face dataset's features (a local folder's are inferred)."""
    where = f"hfds {data.name}"
    name = str(expand_user(data.name or "").resolve()) if expand_user(data.name or "").exists() else data.name
    if problem := hub_problem(str(name)):  # fast: datasets would retry for half a minute first
        raise HubUnreachable(problem)
    try:
        import datasets
    except ImportError:
        return None, where
    try:
        builder = datasets.load_dataset_builder(name, cache_dir=str(data.root) if data.root else None)
        features = builder.info.features
        if features is None:  # packaged builders (parquet) learn their features when preparing
            builder.download_and_prepare()
            features = builder.info.features
    except ConnectionError as err:  # datasets' word for "the Hub cannot be reached" (offline mode included)
        raise HubUnreachable(unreachable_message(str(data.name), _first_line(err))) from None
    except FileNotFoundError as err:  # no such local folder, or no such dataset on the Hub: not a num_classes matter
        raise DatasetNotFound(f"hfds {data.name!r} not found: {_first_line(err)}; check data.name") from None
    except Exception:  # noqa: BLE001 - no such dataset, no label column: the caller asks for num_classes
        return None, where
    label = (features or {}).get("label")
    return (label.num_classes if isinstance(label, datasets.ClassLabel) else None), where


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__
