"""Classifier head: global average pool, dropout, linear."""

from __future__ import annotations

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """Global average pooling, dropout and a linear classifier `fc`.

    Args:
        in_features: Channels of the (B, C, H, W) input.
        num_classes: Classes; 0 makes `fc` an identity (the head returns pooled features).
        drop_rate: Dropout before `fc`.
    """

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Identity()
        self.reset(num_classes)

    def reset(self, num_classes: int) -> None:
        """Replace `fc` with a fresh classifier for `num_classes` (0: identity)."""
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((2, 3)))
        return x if pre_logits else self.fc(x)
