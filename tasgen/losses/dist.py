"""DIST: knowledge distillation from a stronger teacher by correlation (Huang et al., NeurIPS 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dist_terms", "pearson_rows"]


def pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``: shape (rows,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """DIST's inter-class and intra-class relation losses, each times tau^2.

    With Y = softmax(Z / tau) (B, C): inter = 1 - mean over images of the Pearson
    correlation of the two models' rows of Y (each image's class ranking); intra =
    1 - mean over classes of the correlation of their columns (how each class is
    spread over the batch). Both are 0 for predictions related by a positive affine map.

    Args:
        student_logits: Learner logits (B, C).
        teacher_logits: Target logits (B, C), detached.
        temperature: Softmax temperature tau.

    Returns:
        ``(inter, intra)``: scalars.
    """
    y_s = F.softmax(student_logits / temperature, dim=1)
    y_t = F.softmax(teacher_logits / temperature, dim=1)
    scale = temperature * temperature
    inter = 1 - pearson_rows(y_s, y_t).mean()
    intra = 1 - pearson_rows(y_s.transpose(0, 1), y_t.transpose(0, 1)).mean()
    return inter * scale, intra * scale
