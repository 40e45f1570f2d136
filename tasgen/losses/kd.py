"""Hinton knowledge distillation on logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kd_loss"]


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """KL(softmax(t / T) || softmax(s / T)) * T^2, summed over classes, mean over the batch.

    The T^2 factor keeps the gradient scale independent of T (Hinton et al., 2015).

    Args:
        student_logits: Learner logits, shape (B, C).
        teacher_logits: Target logits, shape (B, C); detach them if the target must not learn.
        temperature: Softmax temperature T > 0.

    Returns:
        Scalar loss.
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (temperature * temperature)
