"""Cross-entropy against hard labels or the soft targets that mixup produces."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["cross_entropy"]


def cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Batch-mean cross-entropy.

    Args:
        logits: Class scores, shape (B, C).
        target: Class indices (B,) or class probabilities (B, C), e.g. from mixup.
        label_smoothing: Share of the target mass spread uniformly over the classes.

    Returns:
        Scalar loss.
    """
    # F.cross_entropy accepts both target forms; soft targets need a float dtype.
    if target.ndim == 2:
        target = target.to(logits.dtype)
    return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
