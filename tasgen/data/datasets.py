"""`build_datasets`: the train, validation and test datasets a `DataSpec` describes.

The split is a property of the data, not of the run: it is drawn from
`data.split_seed` alone, so runs of every seed (and the teacher they share) see the
same train / validation / test images. The validation split is carved out of the
training images; it chooses the best epoch (and the split search's winner). The test
split is what results are reported on and is never used for a choice.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, IterableDataset, Subset

from tasgen.spec.schema import DataSpec

from .errors import DataError
from .folder_datasets import cifar_datasets
from .split import stratified_split
from .tensor_datasets import TensorImageDataset, digits_images, mnist5k_images, synthetic_images
from .timm_datasets import hfds_datasets, image_folder_datasets, wds_datasets
from .transforms import TensorImageTransform

__all__ = ["DataSplits", "DatasetInfo", "build_datasets"]

# The validation carve uses its own stream, so changing val_fraction never moves the test split.
_VAL_STREAM = 0x5EED_0F_5A1


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of tasgen needs to know about a dataset.

    Attributes:
        num_classes: Classes of the labels.
        name: The dataset kind (`data.dataset`).
        num_train: Images trained on.
        num_val: Validation images (0 when `data.val_fraction` is 0).
        num_test: Test images (results are reported on them).
        split_id: Fingerprint of which images are in which split; a teacher records
            it, and a run refuses a teacher fitted on another split.
    """

    num_classes: int
    name: str
    num_train: int
    num_val: int
    num_test: int
    split_id: str

    @property
    def num_eval(self) -> int:
        """Test images (the split every reported figure comes from)."""
        return self.num_test


@dataclass(frozen=True)
class DataSplits:
    """The three splits of a dataset and what is known about them."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    info: DatasetInfo


def _fingerprint(name: str, **indices: torch.Tensor) -> str:
    digest = hashlib.sha256(name.encode())
    for key, value in sorted(indices.items()):
        digest.update(key.encode())
        digest.update(value.to(torch.int64).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _carve_val(labels: torch.Tensor, data: DataSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """`(train, val)` positions within the training images (val empty when val_fraction is 0)."""
    if data.val_fraction == 0:
        return torch.arange(labels.numel()), torch.zeros(0, dtype=torch.long)
    return stratified_split(labels, data.val_fraction, data.split_seed ^ _VAL_STREAM)


def _in_memory(data: DataSpec, budget: bool) -> DataSplits:
    if data.dataset == "digits":
        images, labels = digits_images(data.image_size)
    elif data.dataset == "mnist5k":
        images, labels = mnist5k_images(data.image_size)
    else:
        images, labels = synthetic_images(data.num_samples, data.image_size)
    rest, test_idx = stratified_split(labels, data.eval_fraction, data.split_seed)
    train_pos, val_pos = _carve_val(labels[rest], data)
    train_idx, val_idx = rest[train_pos], rest[val_pos]
    # The fingerprint covers the whole training pool: a budget run and the teacher fitted on
    # the pool share one split (their validation and test images are the same).
    split_id = _fingerprint(f"{data.dataset}:{data.num_samples}", train=train_idx, val=val_idx, test=test_idx)
    if budget and data.train_samples is not None:
        train_idx = _budget(train_idx, labels, data)
    train_tf = TensorImageTransform(data.augment, data.image_size, training=True)
    eval_tf = TensorImageTransform(data.augment, data.image_size, training=False)

    def part(idx: torch.Tensor, tf: TensorImageTransform) -> TensorImageDataset:
        return TensorImageDataset(images[idx], labels[idx], tf)

    info = DatasetInfo(int(labels.max()) + 1, data.dataset, len(train_idx), len(val_idx), len(test_idx), split_id)
    val = part(val_idx, eval_tf) if len(val_idx) else None
    return DataSplits(part(train_idx, train_tf), val, part(test_idx, eval_tf), info)


def _budget(train_idx: torch.Tensor, labels: torch.Tensor, data: DataSpec) -> torch.Tensor:
    """A stratified subset of `data.train_samples` training images (drawn from split_seed).

    Raises:
        DataError: the budget is larger than the training images: a run labelled with
            it would have trained on fewer.
    """
    assert data.train_samples is not None
    if data.train_samples > len(train_idx):
        raise DataError(
            f"data.train_samples = {data.train_samples} is more than the {len(train_idx)} training images of "
            f"{data.dataset} (after the test and validation splits): set data.train_samples to at most "
            f"{len(train_idx)}, or leave it out to train on all of them",
            key=("data", "train_samples"),
        )
    if data.train_samples == len(train_idx):
        return train_idx
    keep_fraction = data.train_samples / len(train_idx)
    _, kept = stratified_split(labels[train_idx], keep_fraction, data.split_seed)
    return train_idx[kept]


_TIMM_SOURCES = {"imagefolder": image_folder_datasets, "hfds": hfds_datasets, "wds": wds_datasets}


def _targets(dataset: Dataset) -> torch.Tensor | None:
    """Class index per item without decoding an image: torchvision's `targets`, timm readers' samples."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        samples = getattr(getattr(dataset, "reader", None), "samples", None)
        if isinstance(samples, (list, tuple)) and samples and isinstance(samples[0], (list, tuple)):
            targets = [target for _, target in samples]
    return torch.as_tensor(targets, dtype=torch.long) if targets is not None else None


def _length(dataset: Dataset) -> int:
    try:
        return len(dataset)  # type: ignore[arg-type]
    except TypeError:  # a stream of unknown length
        return 0


def _with_eval_transform(train: Dataset, test: Dataset) -> Dataset:
    """The training files read with the test split's (eval) transform: validation is never augmented."""
    view = copy.copy(train)
    view.transform = test.transform  # type: ignore[attr-defined]
    return view


def _from_files(data: DataSpec, budget: bool) -> DataSplits:
    """Datasets with a test split of their own (CIFAR, image folders, Hugging Face, WebDataset).

    The validation images are carved out of the training split: stratified when the
    labels are known without decoding images, otherwise a plain random subset.
    Streamed datasets (no length) cannot be carved and get no validation split.
    """
    if data.dataset in ("cifar10", "cifar100"):
        train, test = cifar_datasets(data)
        num_classes = len(train.classes)
    else:
        train, test, num_classes = _TIMM_SOURCES[data.dataset](data)
    if isinstance(train, IterableDataset):
        if budget and data.train_samples is not None:  # a stream is neither counted nor indexed: no subset to draw
            raise DataError(
                f"data.train_samples = {data.train_samples} cannot be drawn from {data.dataset}: it is streamed, so "
                "its images are neither counted nor indexed. Leave data.train_samples out"
                + (", or set data.streaming: false" if data.dataset == "hfds" else ""),
                key=("data", "train_samples"),
            )
        info = DatasetInfo(num_classes, data.dataset, _length(train), 0, _length(test),
                           _fingerprint(f"{data.dataset}:{data.name}:{data.train_split}:{data.eval_split}"))
        return DataSplits(train, None, test, info)
    labels = _targets(train)
    if labels is None:  # unknown labels: one class for the split, so the carve is a plain random subset
        labels = torch.zeros(len(train), dtype=torch.long)  # type: ignore[arg-type]
    train_idx, val_idx = _carve_val(labels, data)
    split_id = _fingerprint(f"{data.dataset}:{len(labels)}:{len(test)}", train=train_idx, val=val_idx)  # type: ignore[arg-type]
    if budget and data.train_samples is not None:
        train_idx = _budget(train_idx, labels, data)
    info = DatasetInfo(num_classes, data.dataset, len(train_idx), len(val_idx), len(test), split_id)  # type: ignore[arg-type]
    val = Subset(_with_eval_transform(train, test), val_idx.tolist()) if len(val_idx) else None
    return DataSplits(Subset(train, train_idx.tolist()), val, test, info)


def build_datasets(data: DataSpec, *, budget: bool = True) -> DataSplits:
    """Build the train, validation and test datasets of a spec.

    Items are `(image, label)`: a float CHW tensor in [0, 1] of side `data.image_size`
    (not normalised: each model normalises on the device) and an int class index.

    Which image lands in which split depends on `data.split_seed` (and the split
    fractions) only, never on the run's seed.

    Args:
        data: The data section of a spec.
        budget: Apply `data.train_samples` (a student's small-data budget); a
            teacher fit passes False and trains on the whole training pool.

    Returns:
        The `DataSplits`; `val` is None when `data.val_fraction` is 0.

    Raises:
        DataError: Files are missing, empty or corrupt (cifar*, imagefolder, hfds, wds), or
            the split leaves a part empty.
    """
    if data.dataset in ("digits", "mnist5k", "synthetic"):
        return _in_memory(data, budget)
    if data.dataset in ("cifar10", "cifar100", *_TIMM_SOURCES):
        return _from_files(data, budget)
    raise ValueError(f"unknown dataset '{data.dataset}'")  # the schema's Literal makes this unreachable
