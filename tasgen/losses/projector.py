"""Per-model linear heads into a common feature width."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureProjector"]


class FeatureProjector(nn.Module):
    """A bias-free linear head per model, mapping its pooled feature width to `dim`.

    Args:
        in_dims: Pooled feature width of each model, e.g. {'teacher': 768, 'student': 512}.
        dim: Common output width.
    """

    def __init__(self, in_dims: dict[str, int], dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.heads = nn.ModuleDict(
            {name: nn.Linear(width, dim, bias=False) for name, width in in_dims.items()}
        )

    def forward(self, name: str, feats: torch.Tensor) -> torch.Tensor:
        """Project `feats` (B, in_dims[name]) of model `name` to (B, dim)."""
        return self.heads[name](feats)
