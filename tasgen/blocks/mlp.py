"""The two-layer MLP shared by transformer and mixer blocks."""

from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """Linear, GELU, Linear, acting on the last axis.

    Args:
        dim: Input and output width.
        hidden: Hidden width.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def hidden_width(dim: int, ratio: float) -> int:
    """Hidden width of an MLP: `dim * ratio`, rounded down, at least 1."""
    return max(1, int(dim * ratio))
