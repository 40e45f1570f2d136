"""Patch embedding: a non-overlapping strided convolution plus a channel norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tasgen.blocks.norm import LayerNorm2d


class PatchEmbed(nn.Module):
    """Patchify convolution (kernel = stride = patch) followed by LayerNorm over channels.

    Inputs whose sides are not multiples of `patch` are zero-padded on the bottom
    and right, so a side of length n becomes ceil(n / patch).

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        patch: Patch side (and stride).
    """

    def __init__(self, in_ch: int, out_ch: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_ch, out_ch, patch, patch)
        self.norm = LayerNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = -x.shape[2] % self.patch, -x.shape[3] % self.patch
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.norm(self.proj(x))
