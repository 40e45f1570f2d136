"""The two-layer MLP shared by transformer and mixer blocks: timm's (fc1, GELU, fc2)."""

from __future__ import annotations

import timm

Mlp = timm.layers.Mlp  # Mlp(dim, hidden): Linear, GELU, Linear on the last axis


def hidden_width(dim: int, ratio: float) -> int:
    """Hidden width of an MLP: `dim * ratio`, rounded down, at least 1."""
    return max(1, int(dim * ratio))
