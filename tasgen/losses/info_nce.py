"""InfoNCE between two models' features of the same batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["info_nce"]


def info_nce(
    query: torch.Tensor, key: torch.Tensor, temperature: float | torch.Tensor, positive_offset: int = 0
) -> torch.Tensor:
    """One-directional InfoNCE: each query must pick its own image's key.

    The positive of query i is key ``positive_offset + i``; every other key is a negative.

    Args:
        query: Learner features, shape (B, D).
        key: Target features, shape (N, D), N >= B (e.g. N = the global batch under DDP,
            with this process's keys at rows ``positive_offset .. positive_offset + B``);
            detach them if the target must not learn.
        temperature: Scalar (float or 0-d tensor, e.g. a learnable one) dividing the cosines.
        positive_offset: Row of the first query's positive key.

    Returns:
        Scalar loss (batch-mean cross-entropy over B candidates).
    """
    query = F.normalize(query, dim=-1)
    key = F.normalize(key, dim=-1)
    logits = query @ key.transpose(0, 1) / temperature
    positives = torch.arange(query.shape[0], device=query.device) + positive_offset
    return F.cross_entropy(logits, positives)
