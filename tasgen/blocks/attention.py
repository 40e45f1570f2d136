"""Multi-head self-attention and the pre-norm transformer block, on (B, N, C) tokens."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tasgen.blocks.mlp import Mlp, hidden_width


def default_num_heads(dim: int) -> int:
    """Default head count for `dim` channels: dim // 32 (at least 1), lowered until it divides dim.

    Args:
        dim: Channels of the attention layer.

    Returns:
        The largest divisor of `dim` that is at most max(1, dim // 32).
    """
    heads = max(1, dim // 32)
    while dim % heads:
        heads -= 1
    return heads


class Attention(nn.Module):
    """Multi-head self-attention with one fused `qkv` projection.

    Ours, not timm.layers.Attention: it casts a float mask to the query's dtype, which
    autocast may have lowered (timm passes the mask as it is, and raises AssertionError,
    not ValueError, for indivisible heads).

    Args:
        dim: Token width C; must be divisible by `heads`.
        heads: Number of attention heads.
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.num_heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over the tokens of each sample.

        Args:
            x: Tokens (B, N, C).
            attn_mask: Optional additive (float) or boolean mask broadcastable to
                (B, heads, N, N).

        Returns:
            Tokens (B, N, C).
        """
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if attn_mask is not None and attn_mask.is_floating_point():
            # SDPA wants an additive mask in the query's dtype (which autocast may lower).
            attn_mask = attn_mask.to(q.dtype)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x)).

    Args:
        dim: Token width C.
        heads: Attention heads; must divide `dim`.
        mlp_ratio: Hidden width of the MLP relative to `dim`.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_width(dim, mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))
