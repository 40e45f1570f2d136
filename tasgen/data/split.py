"""A deterministic stratified train/eval split."""

from __future__ import annotations

import torch

__all__ = ["stratified_split"]


def stratified_split(
    labels: torch.Tensor, eval_fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split indices so that each class keeps its share in both parts.

    The eval part has round(N * eval_fraction) images (at least 1, at most N - 1);
    classes get their quota by largest remainder, so the total is exact.

    Args:
        labels: Class index per image, shape (N,), N >= 2.
        eval_fraction: Share of images held out, in (0, 1).
        seed: Seed of the shuffle inside each class.

    Returns:
        `(train_indices, eval_indices)`, each sorted.
    """
    n = labels.numel()
    n_eval = min(max(round(n * eval_fraction), 1), n - 1)
    classes, counts = torch.unique(labels, return_counts=True)
    quota = counts.double() * (n_eval / n)
    per_class = quota.floor().long()
    remainder = n_eval - int(per_class.sum())
    if remainder > 0:
        # Stable sort: ties go to the lower class index, independent of the seed.
        order = torch.sort(quota - per_class, descending=True, stable=True).indices
        per_class[order[:remainder]] += 1

    g = torch.Generator().manual_seed(seed)
    train, held_out = [], []
    for cls, k in zip(classes.tolist(), per_class.tolist(), strict=True):
        members = torch.nonzero(labels == cls).flatten()
        members = members[torch.randperm(members.numel(), generator=g)]
        held_out.append(members[:k])
        train.append(members[k:])
    return torch.cat(train).sort().values, torch.cat(held_out).sort().values
