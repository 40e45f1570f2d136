"""The OFA-KD logit loss (Hao et al., NeurIPS 2023)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ofa_loss"]


def ofa_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """OFA loss: mean over the batch of -sum_c ((p_t + y)^eps - y)_c * log p_s,c.

    With eps = 1 this is cross-entropy against the teacher's probabilities; eps > 1
    raises the weight of the true class the more confident the teacher is in it.
    y is always a one-hot: soft targets (mixup, cutmix, smoothing) count as their
    most probable class, as in the OFA-KD reference, so the target-class boost
    is the same whatever the augmentation.

    Args:
        student_logits: Learner logits, shape (B, C).
        teacher_logits: Target logits, shape (B, C); detach them if the target must not learn.
        target: Class indices (B,) or class probabilities (B, C), e.g. from mixup
            (reduced to their argmax).
        eps: Exponent >= 1.
        temperature: Softmax temperature of both distributions.

    Returns:
        Scalar loss.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)
    if target.ndim == 2:
        target = target.argmax(dim=-1)
    y = F.one_hot(target, num_classes=student_logits.shape[-1]).to(p_teacher.dtype)
    weight = (p_teacher + y).pow(eps) - y
    return -(weight * log_p_student).sum(dim=-1).mean()
