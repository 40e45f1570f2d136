"""Data of tasgen: datasets, un-normalised transforms, mixup and seeded loaders."""

from .datasets import DatasetInfo, DataSplits, build_datasets
from .errors import DataError
from .loader import EvalShardSampler, build_eval_loader, build_loaders
from .mixup import build_mixup
from .split import stratified_split
from .tensor_datasets import TensorImageDataset
from .transforms import RandomErasing, TensorImageTransform, build_pil_transforms

__all__ = [
    "DataError",
    "DataSplits",
    "DatasetInfo",
    "EvalShardSampler",
    "RandomErasing",
    "TensorImageDataset",
    "TensorImageTransform",
    "build_datasets",
    "build_eval_loader",
    "build_loaders",
    "build_mixup",
    "build_pil_transforms",
    "stratified_split",
]
