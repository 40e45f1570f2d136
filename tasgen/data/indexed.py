"""A training set whose items also say where they sit in it, for methods with a memory per image."""

from __future__ import annotations

from torch.utils.data import Dataset, Subset

__all__ = ["WithIndex"]


class WithIndex(Subset):
    """``dataset[i]`` as ``(image, label, i)``: CRD's memory has a slot per training image.

    A `Subset` of every position, so the loader's file-naming of unreadable images
    looks through it as through the validation carve.

    Args:
        dataset: A map-style dataset of ``(image, label)``.
    """

    def __init__(self, dataset: Dataset) -> None:
        super().__init__(dataset, range(len(dataset)))  # type: ignore[arg-type]

    def __getitem__(self, index: int):  # type: ignore[override]
        return (*self.dataset[index], index)

    def __getitems__(self, indices: list[int]) -> list:  # type: ignore[override]
        return [self[i] for i in indices]
