"""`build_datasets`: the train and eval datasets a `DataSpec` describes."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from tasgen.spec.schema import DataSpec

from .folder_datasets import cifar_datasets
from .split import stratified_split
from .tensor_datasets import TensorImageDataset, digits_images, synthetic_images
from .timm_datasets import hfds_datasets, image_folder_datasets, wds_datasets
from .transforms import TensorImageTransform

__all__ = ["DatasetInfo", "build_datasets"]


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of tasgen needs to know about a dataset."""

    num_classes: int
    name: str
    num_train: int
    num_eval: int


def _in_memory(data: DataSpec, seed: int) -> tuple[TensorImageDataset, TensorImageDataset, int]:
    if data.dataset == "digits":
        images, labels = digits_images(data.image_size)
    else:
        images, labels = synthetic_images(data.num_samples, data.image_size)
    train_idx, eval_idx = stratified_split(labels, data.eval_fraction, seed)
    train_tf = TensorImageTransform(data.augment, data.image_size, training=True)
    eval_tf = TensorImageTransform(data.augment, data.image_size, training=False)
    train = TensorImageDataset(images[train_idx], labels[train_idx], train_tf)
    evaluate = TensorImageDataset(images[eval_idx], labels[eval_idx], eval_tf)
    return train, evaluate, int(labels.max()) + 1


_TIMM_SOURCES = {"imagefolder": image_folder_datasets, "hfds": hfds_datasets, "wds": wds_datasets}


def build_datasets(data: DataSpec, seed: int) -> tuple[Dataset, Dataset, DatasetInfo]:
    """Build the train and eval datasets of a spec.

    Items are `(image, label)`: a float CHW tensor in [0, 1] of side `data.image_size`
    (not normalised: each model normalises on the device) and an int class index.

    Args:
        data: The data section of a spec.
        seed: Run seed; picks the train/eval split of digits and synthetic.

    Returns:
        `(train_dataset, eval_dataset, info)`.

    Raises:
        DataError: Files are missing, empty or corrupt (cifar*, imagefolder, hfds, wds).
    """
    if data.dataset in ("digits", "synthetic"):
        train, evaluate, num_classes = _in_memory(data, seed)
    elif data.dataset in ("cifar10", "cifar100"):
        train, evaluate = cifar_datasets(data)
        num_classes = len(train.classes)
    elif data.dataset in _TIMM_SOURCES:  # through timm's dataset factory
        train, evaluate, num_classes = _TIMM_SOURCES[data.dataset](data)
    else:  # the schema's Literal makes this unreachable; keep the error for new names
        raise ValueError(f"unknown dataset '{data.dataset}'")
    info = DatasetInfo(num_classes, data.dataset, len(train), len(evaluate))
    return train, evaluate, info
