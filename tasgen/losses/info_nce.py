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
    same_class: str = "negative",
) -> torch.Tensor:
    """One-directional InfoNCE: each query must pick its own image's key.

    The positive of query i is key ``positive_offset + i``; every other key is a
    negative, except, when labels are given, the other keys of the query's class.
    With few classes a batch holds several images of each (a batch of 32 over 10
    classes: about 3 per query), and a teacher's features of one class are close
    together, so as negatives they ask the learner to tell apart what the labels say
    is the same. ``same_class`` says what they become:

    - ``negative``: negatives, as without labels (the paper's form);
    - ``ignore``: left out of the softmax (neither positive nor negative);
    - ``positive``: positives too, each weighing as much as the own image's key: the
      loss is the mean over the query's class keys of their negative log-probability
      under the softmax over all keys (the supervised contrastive form, Khosla et
      al., 2020, with the image's own key always among the positives).

    Args:
        query: Learner features, shape (B, D).
        key: Target features, shape (N, D), N >= B (e.g. N = the global batch under DDP,
            with this process's keys at rows ``positive_offset .. positive_offset + B``);
            detach them if the target must not learn.
        temperature: Scalar (float or 0-d tensor, e.g. a learnable one) dividing the cosines.
        positive_offset: Row of the first query's positive key.
        query_labels: Class index of each query (B,); with ``key_labels``, ``same_class`` applies.
        key_labels: Class index of each key (N,).
        same_class: ``negative``, ``ignore`` or ``positive``: what the other same-class keys
            are when labels are given.

    Returns:
        Scalar loss (batch-mean cross-entropy over the candidates).
    """
    query = F.normalize(query, dim=-1)
    key = F.normalize(key, dim=-1)
    logits = query @ key.transpose(0, 1) / temperature
    positives = torch.arange(query.shape[0], device=query.device) + positive_offset
    if query_labels is None or key_labels is None or same_class == "negative":
        return F.cross_entropy(logits, positives)
    same = query_labels[:, None] == key_labels[None, :]
    own = torch.zeros_like(same).scatter_(1, positives[:, None], True)
    if same_class == "positive":
        chosen = (same | own).to(logits.dtype)
        log_prob = logits.log_softmax(dim=-1)
        return -((log_prob * chosen).sum(dim=-1) / chosen.sum(dim=-1)).mean()
    if same_class != "ignore":
        raise ValueError(f"same_class must be 'negative', 'ignore' or 'positive', got {same_class!r}")
    return F.cross_entropy(logits.masked_fill(same & ~own, float("-inf")), positives)
