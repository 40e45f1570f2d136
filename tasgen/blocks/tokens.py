"""Run a token block, which works on (B, N, C), on an NCHW feature map."""

from __future__ import annotations

import torch
from torch import nn


class TokenBlock2d(nn.Module):
    """Wraps a (B, N, C) token block so that it takes and returns (B, C, H, W).

    Lets attention and mixer stages share the NCHW interface of conv stages.

    Args:
        block: A module mapping (B, N, C) to (B, N, C), with N = H * W in row-major order.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        x = self.block(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(B, C, H, W)
