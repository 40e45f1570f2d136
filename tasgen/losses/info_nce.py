"""InfoNCE between two models' features of the same batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["info_nce"]


def info_nce(
    query: torch.Tensor,
    key: torch.Tensor,
    temperature: float | torch.Tensor,
    positive_offset: int = 0,
    query_labels: torch.Tensor | None = None,
    key_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """One-directional InfoNCE: each query must pick its own image's key.

    The positive of query i is key ``positive_offset + i``; every other key is a
    negative, except, when labels are given, the other keys of the query's class:
    those are left out of the softmax (neither positive nor negative), so that two
    images of one class are not pushed apart. With few classes a batch holds several
    images of each (a batch of 32 over 10 classes: about 3 per query), and a
    teacher's features of one class are close together, so as negatives they ask the
    learner to tell apart what the labels say is the same.

    Args:
        query: Learner features, shape (B, D).
        key: Target features, shape (N, D), N >= B (e.g. N = the global batch under DDP,
            with this process's keys at rows ``positive_offset .. positive_offset + B``);
            detach them if the target must not learn.
        temperature: Scalar (float or 0-d tensor, e.g. a learnable one) dividing the cosines.
        positive_offset: Row of the first query's positive key.
        query_labels: Class index of each query (B,); with ``key_labels``, drops same-class negatives.
        key_labels: Class index of each key (N,).

    Returns:
        Scalar loss (batch-mean cross-entropy over the candidates).
    """
    query = F.normalize(query, dim=-1)
    key = F.normalize(key, dim=-1)
    logits = query @ key.transpose(0, 1) / temperature
    positives = torch.arange(query.shape[0], device=query.device) + positive_offset
    if query_labels is not None and key_labels is not None:
        same = query_labels[:, None] == key_labels[None, :]
        own = torch.zeros_like(same).scatter_(1, positives[:, None], True)
        logits = logits.masked_fill(same & ~own, float("-inf"))
    return F.cross_entropy(logits, positives)
