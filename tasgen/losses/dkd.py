"""Decoupled knowledge distillation (Zhao et al., CVPR 2022)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["dkd_loss", "dkd_terms"]

# Masks the target class out of a softmax: exp(-1e4) is 0 in float32, and unlike -inf
# it keeps 0 * log 0 terms (and their gradients) finite. The reference subtracts 1000.
_MASK = 1.0e4


def _class_index(target: torch.Tensor) -> torch.Tensor:
    # Soft targets (mixup, cutmix) count as their most probable class, as in ofa_loss.
    return target.argmax(dim=-1) if target.ndim == 2 else target


def dkd_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image TCKD and NCKD, each times T^2.

    With p = softmax(z / T) and t the target class:
    TCKD = KL(b_teacher || b_student) over the binary distribution b = (p_t, 1 - p_t);
    NCKD = KL(q_teacher || q_student) over the non-target classes, q = p renormalised
    without class t. Classical KD is TCKD + (1 - p_t^teacher) * NCKD (the paper's Eq. 3).

    Args:
        student_logits: Learner logits (B, C).
        teacher_logits: Target logits (B, C); detach them if the target must not learn.
        target: Class indices (B,) or class probabilities (B, C) (reduced to their argmax).
        temperature: Softmax temperature T.

    Returns:
        ``(tckd, nckd)``, each of shape (B,).
    """
    t = _class_index(target)
    gt = F.one_hot(t, student_logits.shape[-1]).to(student_logits.dtype)
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)

    def binary(log_p: torch.Tensor) -> torch.Tensor:
        # log(p_t) and log(1 - p_t), the latter as a logsumexp over the other classes (stable near p_t = 1).
        target_part = (log_p * gt).sum(-1)
        rest = torch.logsumexp(log_p - _MASK * gt, dim=-1)
        return torch.stack([target_part, rest], dim=-1)

    log_b_s, log_b_t = binary(log_p_s), binary(log_p_t)
    tckd = (log_b_t.exp() * (log_b_t - log_b_s)).sum(-1)
    log_q_s = F.log_softmax(student_logits / temperature - _MASK * gt, dim=-1)
    log_q_t = F.log_softmax(teacher_logits / temperature - _MASK * gt, dim=-1)
    nckd = (log_q_t.exp() * (log_q_t - log_q_s)).sum(-1)
    scale = temperature * temperature
    return tckd * scale, nckd * scale


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> torch.Tensor:
    """DKD: batch mean of alpha * TCKD + beta * NCKD (see `dkd_terms`).

    Args:
        student_logits: Learner logits (B, C).
        teacher_logits: Target logits (B, C), detached.
        target: Class indices (B,) or class probabilities (B, C).
        alpha: Weight of TCKD.
        beta: Weight of NCKD.
        temperature: Softmax temperature T.

    Returns:
        Scalar loss.
    """
    tckd, nckd = dkd_terms(student_logits, teacher_logits, target, temperature)
    return (alpha * tckd + beta * nckd).mean()
