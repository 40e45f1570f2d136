"""Swin-style windowed self-attention block on NHWC maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tasgen.blocks.attention import Attention
from tasgen.blocks.mlp import Mlp, hidden_width


def relative_position_index(
    window_h: int, window_w: int, window_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """Index into a (2 * window_size - 1) ** 2 bias table for every pair of positions in a window.

    Args:
        window_h: Window height, at most `window_size`.
        window_w: Window width, at most `window_size`.
        window_size: Side the bias table was sized for.
        device: Where to build the index.

    Returns:
        Long tensor (n, n), n = window_h * window_w, positions in row-major order.
    """
    ys, xs = torch.meshgrid(
        torch.arange(window_h, device=device), torch.arange(window_w, device=device), indexing="ij"
    )
    coords = torch.stack((ys.flatten(), xs.flatten()))
    rel = coords[:, :, None] - coords[:, None, :] + (window_size - 1)
    return rel[0] * (2 * window_size - 1) + rel[1]


def window_partition(x: torch.Tensor, window_h: int, window_w: int) -> torch.Tensor:
    """Cut (B, H, W, C) into windows (B * nW, window_h * window_w, C); H, W must be multiples."""
    B, H, W, C = x.shape
    x = x.view(B, H // window_h, window_h, W // window_w, window_w, C).transpose(2, 3)
    return x.reshape(-1, window_h * window_w, C)


def window_merge(
    windows: torch.Tensor, B: int, H: int, W: int, window_h: int, window_w: int
) -> torch.Tensor:
    """Inverse of `window_partition`: (B * nW, window_h * window_w, C) back to (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(B, H // window_h, W // window_w, window_h, window_w, C).transpose(2, 3)
    return x.reshape(B, H, W, C)


class WindowAttentionBlock(nn.Module):
    """Pre-norm transformer block whose attention is restricted to non-overlapping windows.

    Ours, not timm's Swin blocks: those need the grid to be a multiple of the window
    (or pad without masking the padded keys); the bridge meets any grid.

    Works on any grid: the normalised map is zero-padded on the bottom and right up
    to whole windows, padded positions are masked out as keys (so they never change
    the result), and the output is cropped back. A window larger than the grid is
    clamped to the grid. Without the bias and with one window covering the grid,
    the block computes exactly what `AttentionBlock` computes with the same weights.

    Args:
        dim: Channels C of the (B, H, W, C) input.
        heads: Attention heads; must divide `dim`.
        window_size: Window side.
        mlp_ratio: Hidden width of the MLP relative to `dim`.
        rel_pos_bias: Add a learned relative position bias (one table entry per offset
            and head) to the attention logits.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        rel_pos_bias: bool = True,
    ) -> None:
        super().__init__()
        if window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {window_size}")
        self.window_size = window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_width(dim, mlp_ratio))
        self.relative_position_bias_table: nn.Parameter | None = None
        if rel_pos_bias:
            self.relative_position_bias_table = nn.Parameter(
                torch.zeros((2 * window_size - 1) ** 2, heads)
            )
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _attn_mask(
        self, B: int, H: int, W: int, Hp: int, Wp: int, wh: int, ww: int, x: torch.Tensor
    ) -> torch.Tensor | None:
        """Additive mask (bias and/or padded keys) broadcastable to (B * nW, heads, n, n)."""
        mask = None
        if self.relative_position_bias_table is not None:
            n = wh * ww
            index = relative_position_index(wh, ww, self.window_size, x.device)
            bias = self.relative_position_bias_table[index.view(-1)].view(n, n, -1)
            mask = bias.permute(2, 0, 1).unsqueeze(0)
        if Hp != H or Wp != W:
            valid = (torch.arange(Hp, device=x.device) < H)[:, None] & (
                torch.arange(Wp, device=x.device) < W
            )[None, :]
            valid = window_partition(valid[None, :, :, None], wh, ww)  # (nW, n, 1)
            pad = torch.zeros(valid.shape, dtype=x.dtype, device=x.device)
            # (nW, 1, 1, n): a key mask, the same for every head and query.
            pad = pad.masked_fill(~valid, float("-inf")).transpose(1, 2).unsqueeze(1)
            # Windows are flattened into the batch, sample-major.
            pad = pad.unsqueeze(0).expand(B, -1, -1, -1, -1).flatten(0, 1)
            mask = pad if mask is None else mask + pad
        return mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Feature map (B, H, W, C).

        Returns:
            Feature map (B, H, W, C).
        """
        B, H, W, C = x.shape
        wh, ww = min(self.window_size, H), min(self.window_size, W)
        pad_h, pad_w = -H % wh, -W % ww
        Hp, Wp = H + pad_h, W + pad_w

        y = self.norm1(x)
        if pad_h or pad_w:
            y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        y = self.attn(window_partition(y, wh, ww), self._attn_mask(B, H, W, Hp, Wp, wh, ww, y))
        y = window_merge(y, B, Hp, Wp, wh, ww)[:, :H, :W]
        x = x + y
        return x + self.mlp(self.norm2(x))
