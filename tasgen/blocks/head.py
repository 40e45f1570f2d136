"""Classifier head: timm's global average pool, dropout, linear `fc`."""

from __future__ import annotations

import timm


class ClassifierHead(timm.layers.ClassifierHead):
    """timm's `ClassifierHead` with average pooling, built as ``(in_features, num_classes, drop_rate)``.

    Args:
        in_features: Channels of the (B, C, H, W) input.
        num_classes: Classes; 0 makes `fc` an identity (the head returns pooled features).
        drop_rate: Dropout before `fc`.
    """

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__(in_features, num_classes, pool_type="avg", drop_rate=drop_rate)
