"""Widths and parameter counts of tasgen's blocks, without torch.

The planner sizes a bridge before any module exists (a cached plan needs no torch),
so the rules that fix a block's widths, and what they make it weigh, live here,
next to the blocks that follow them (tests check each count against the built module).
"""

from __future__ import annotations


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


def hidden_width(dim: int, ratio: float) -> int:
    """Hidden width of an MLP: `dim * ratio`, rounded down, at least 1."""
    return max(1, int(dim * ratio))


def window_block_params(dim: int, heads: int, window_size: int, mlp_ratio: float) -> int:
    """Parameters of a `WindowAttentionBlock` with its relative position bias."""
    hidden = hidden_width(dim, mlp_ratio)
    norms = 2 * (2 * dim)
    attention = (3 * dim * dim + 3 * dim) + (dim * dim + dim)  # qkv, proj
    bias = (2 * window_size - 1) ** 2 * heads
    mlp = (dim * hidden + hidden) + (hidden * dim + dim)
    return norms + attention + bias + mlp
