"""Batch-level mixup / cutmix (timm's implementation)."""

from __future__ import annotations

from timm.data import Mixup

from tasgen.spec.schema import DataSpec

from .errors import DataError

__all__ = ["build_mixup"]


def build_mixup(data: DataSpec, num_classes: int, label_smoothing: float) -> Mixup | None:
    """timm's `Mixup` for the spec's mixup/cutmix alphas, or None when both are 0.

    It is applied to a batch on the device (`images, soft_targets = mixup(images, labels)`)
    and returns soft targets (B, num_classes) that already include label smoothing.
    Its randomness comes from numpy's global generator, which the trainer seeds.

    Args:
        data: The data section of a spec (augment.mixup, augment.cutmix, batch_size).
        num_classes: Classes of the soft targets.
        label_smoothing: Smoothing folded into the soft targets.

    Returns:
        A callable `Mixup`, or None.

    Raises:
        DataError: The batch size is odd (mixup pairs each image with its mirror in the batch).
    """
    aug = data.augment
    if aug.mixup <= 0 and aug.cutmix <= 0:
        return None
    if data.batch_size % 2:
        raise DataError(
            f"mixup/cutmix need an even data.batch_size (got {data.batch_size}): "
            "they pair image i with image B-1-i"
        )
    return Mixup(
        mixup_alpha=aug.mixup,
        cutmix_alpha=aug.cutmix,
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )
