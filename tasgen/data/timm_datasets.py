"""Datasets through timm's dataset factory (`timm.data.create_dataset`).

One function per source, each returning ``(train, eval, num_classes)`` with items
``(float CHW image in [0, 1], int label)``:

- `image_folder_datasets`: ``root/train/<class>/<image>`` and ``root/val/...`` (or
  ``valid/``, ``validation/``, ``eval/``), or ``root/train.tar`` and ``root/val.tar``
  holding the same layout (timm's folder and tar readers);
- `hfds_datasets`: a Hugging Face dataset, from the Hub or a local folder of parquet
  or image files (timm's ``hfds/`` reader; ``hfids/`` when streaming);
- `wds_datasets`: WebDataset shards, ``<key>.jpg`` + ``<key>.cls`` per sample, with an
  ``_info.json`` naming each split's shards and sizes (timm's ``wds/`` reader).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from timm.data import create_dataset
from timm.data.readers import create_reader
from torch.utils.data import Dataset

from tasgen.spec.home import expand_user
from tasgen.spec.hub import hub_problem, unreachable_message
from tasgen.spec.image_folder import (
    ImageFolderError,
    describe_split,
    find_split,
    scan_class_folders,
)
from tasgen.spec.schema import DataSpec

from .errors import DataError
from .image_files import ClassFolderReader, ImageFiles
from .transforms import build_pil_transforms

__all__ = ["hfds_datasets", "image_folder_datasets", "wds_datasets"]


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _classes(ds: Any) -> dict[str, int]:
    # The folder and Hugging Face readers say class_to_idx, the tar reader class_name_to_idx.
    reader = ds.reader
    return dict(getattr(reader, "class_to_idx", None) or getattr(reader, "class_name_to_idx", None) or {})


def image_folder_datasets(data: DataSpec) -> tuple[Dataset, Dataset, int]:
    """Class folders or tar files under ``data.root``, read by timm's folder/tar readers.

    Raises:
        DataError: a split is missing or empty, holds a symlink cycle or a class folder
            without images, or the two splits have different classes.
    """
    assert data.root is not None  # the schema requires a root for imagefolder
    root = expand_user(data.root)
    layout = (f"expected {root}/{data.train_split}/<class>/<image> and {root}/val/<class>/<image> "
              f"(or {data.train_split}.tar and val.tar holding <class>/<image>)")
    if not root.is_dir():
        raise DataError(f"imagefolder root {root} does not exist; {layout}")
    paths = {split: find_split(root, split) for split in (data.train_split, data.eval_split)}
    missing = [describe_split(split) for split, path in paths.items() if path is None]
    if missing:
        raise DataError(f"imagefolder {root} has no {' and no '.join(missing)}; {layout}")
    train_tf, eval_tf = build_pil_transforms(data)
    splits = [_image_files(path, transform, layout) for path, transform in zip(paths.values(), (train_tf, eval_tf),
                                                                                  strict=True)]
    train, evaluate = splits
    train_classes, eval_classes = _classes(train), _classes(evaluate)
    if train_classes != eval_classes:
        only_train = sorted(set(train_classes) - set(eval_classes))
        only_eval = sorted(set(eval_classes) - set(train_classes))
        raise DataError(
            f"imagefolder {root}: the {data.train_split} and {data.eval_split} splits must hold the same class folders "
            f"(only in {data.train_split}: {only_train}; only in {data.eval_split}: {only_eval})"
        )
    return train, evaluate, len(train_classes)


def _image_files(path: Path, transform: Any, layout: str) -> ImageFiles:
    """One split: a folder scanned by tasgen (symlink cycles, empty class folders refused) or a tar file."""
    if path.is_dir():
        try:
            folders = scan_class_folders(path)
        except ImageFolderError as err:
            raise DataError(str(err)) from None
        if folders.empty and folders.samples:
            names = ", ".join(p.name for p in folders.empty[:5]) + (" ..." if len(folders.empty) > 5 else "")
            raise DataError(f"imagefolder {path} has class folders without images ({names}); "
                            "add their images or remove them")
        reader: Any = ClassFolderReader(str(path), folders)
    else:
        try:
            reader = create_reader("", root=str(path))  # timm's tar reader (tars inside tars too)
        except Exception as exc:  # noqa: BLE001 - tarfile raises its own errors and OS errors alike
            raise DataError(f"imagefolder {path} cannot be read as a tar archive ({_one_line(exc)}); {layout}") from None
    if len(reader) == 0:
        raise DataError(f"imagefolder {path} lacks images; {layout}")
    return ImageFiles(str(path), reader=reader, transform=transform)


def _require(module: str, message: str) -> None:
    """Import an optional package timm's reader needs, so a missing one is named before timm prints and raises."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise DataError(message) from None


def hfds_datasets(data: DataSpec) -> tuple[Dataset, Dataset, int]:
    """A Hugging Face dataset through timm's ``hfds/`` (or, streaming, ``hfids/``) reader.

    The dataset needs an ``image`` column and a ``label`` column of class indices
    (a ``ClassLabel`` gives the class count; without one, set ``num_classes``).

    Raises:
        DataError: ``datasets`` is not installed, the Hub cannot be reached (for a Hub
            dataset), the dataset or a split cannot be loaded.
    """
    assert data.name is not None  # the schema requires a name for hfds
    _require("datasets", "dataset 'hfds' needs the Hugging Face datasets package: pip install 'tasgen[hf]'")
    name = _hf_name(data.name)
    prefix = "hfids" if data.streaming else "hfds"
    if unreachable := hub_problem(name):  # fast: datasets would retry for half a minute first
        raise DataError(unreachable, key=("data", "name"))

    def problem(split: str, exc: Exception) -> str:
        if isinstance(exc, ConnectionError):  # datasets' word for "the Hub cannot be reached"
            return unreachable_message(data.name or name, _one_line(exc))
        return f"cannot load hfds {data.name!r} split {split!r}: {_one_line(exc)}"

    train, evaluate = _train_and_eval(
        data, problem, f"{prefix}/{name}", root=str(data.root) if data.root else None, batch_size=data.batch_size
    )
    return train, evaluate, len(_classes(train))


def _train_and_eval(
    data: DataSpec, problem: Callable[[str, Exception], str], name: str, **kwargs: Any
) -> tuple[Dataset, Dataset]:
    """timm's ``create_dataset`` for the train split (training transform) and the eval split.

    Args:
        problem: The one-line message for a split that cannot be loaded.
        name: timm's dataset name (``hfds/...``, ``hfids/...``, ``wds/``).
        kwargs: Passed on to ``create_dataset``.

    Raises:
        DataError: A split cannot be loaded.
    """
    train_tf, eval_tf = build_pil_transforms(data)
    splits = []
    for split, transform, training in ((data.train_split, train_tf, True), (data.eval_split, eval_tf, False)):
        try:
            splits.append(create_dataset(name, split=split, is_training=training, transform=transform, **kwargs))
        except Exception as exc:  # noqa: BLE001 - datasets and the readers raise many kinds; one line for the user
            raise DataError(problem(split, exc)) from None
    return splits[0], splits[1]


def _hf_name(name: str) -> str:
    """A local folder as an absolute path (datasets reads it), a Hub name as is."""
    local = expand_user(name)
    return str(local.resolve()) if local.exists() else name


def wds_datasets(data: DataSpec) -> tuple[Dataset, Dataset, int]:
    """WebDataset shards under ``data.root`` through timm's ``wds/`` reader (always streamed).

    ``_info.json`` (timm's format) lists each split's shard files and sample counts;
    an optional top-level ``num_classes`` there gives the class count.

    Raises:
        DataError: ``webdataset`` is not installed, or the shards or their info are missing.
    """
    assert data.root is not None  # the schema requires a root for wds
    _require("webdataset", "dataset 'wds' needs the webdataset package: pip install 'tasgen[webdataset]'")
    root = expand_user(data.root)
    info = wds_info(root)

    def problem(split: str, exc: Exception) -> str:
        return (f"wds {root} split {split!r}: {_one_line(exc)}; list it in {root}/_info.json "
                "or give a pattern with a count, e.g. 'val-{0000..0003}.tar|2000'")

    train, evaluate = _train_and_eval(data, problem, "wds/", root=str(root), batch_size=data.batch_size, seed=0)
    for split, ds in ((data.train_split, train), (data.eval_split, evaluate)):
        if not len(ds):
            raise DataError(f"wds {root} split {split!r} has no samples (num_samples 0 in _info.json?)")
    classes = info.get("num_classes")
    return train, evaluate, int(classes) if isinstance(classes, int) else 0


def wds_info(root: Path) -> dict[str, Any]:
    """The ``_info.json`` (or ``info.json``) of a shard folder; {} when there is none.

    Raises:
        DataError: the folder is missing or the file is not JSON.
    """
    if not root.is_dir():
        raise DataError(f"wds root {root} does not exist (the folder of the .tar shards and _info.json)")
    for name in ("_info.json", "info.json"):
        file = root / name
        if file.is_file():
            try:
                return json.loads(file.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise DataError(f"{file} is not valid JSON ({exc})") from None
    return {}
