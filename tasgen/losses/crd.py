"""Contrastive representation distillation (Tian et al., ICLR 2020).

Each image i has a slot in two memories of normalised embeddings, one per model.
The student's embedding of i is scored against the teacher memory's slot i (the
positive) and K random slots (negatives), and the teacher's embedding against the
student memory the same way; NCE (the paper's Eq. 18) turns the scores into a loss.
After the step both memories move toward the new embeddings by momentum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ContrastMemory", "CRDLoss", "crd_nce_loss"]

_EPS = 1e-7  # the reference's guard in NCE's ratios


def crd_nce_loss(scores: torch.Tensor, num_data: int) -> torch.Tensor:
    """NCE loss of unnormalised scores: column 0 the positive, columns 1..K the negatives.

    With noise distribution P_n = 1 / N and K noise draws, a score x is classed as data
    with probability x / (x + K P_n): loss = -[log(x_0 / (x_0 + K P_n))
    + sum_k log(K P_n / (x_k + K P_n))], summed per image, averaged over images.

    Args:
        scores: (B, 1 + K), positive: exp(v . m / T) / Z.
        num_data: N, the number of memory slots (training images).

    Returns:
        Scalar loss.
    """
    k = scores.shape[1] - 1
    noise = k / num_data
    positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + _EPS))
    negative = torch.log(noise / (scores[:, 1:] + noise + _EPS))
    return -(positive.sum() + negative.sum()) / scores.shape[0]


class ContrastMemory(nn.Module):
    """Two memories of embeddings (student, teacher), their NCE scores and their momentum update.

    Args:
        dim: Embedding width.
        num_data: Slots: one per training image.
        negatives: K, negatives drawn per image (clamped to num_data - 1).
        temperature: T of the scores exp(v . m / T).
        momentum: m of the update slot <- normalise(m * slot + (1 - m) * v).
    """

    def __init__(self, dim: int, num_data: int, negatives: int, temperature: float, momentum: float) -> None:
        super().__init__()
        if num_data < 2:
            raise ValueError(f"CRD needs at least 2 training images for a negative, got {num_data}")
        self.num_data = num_data
        self.negatives = min(negatives, num_data - 1)
        self.temperature = temperature
        self.momentum = momentum
        bound = 1.0 / math.sqrt(dim / 3)  # the reference's uniform initialisation
        self.register_buffer("memory_student", torch.rand(num_data, dim).mul_(2 * bound).add_(-bound))
        self.register_buffer("memory_teacher", torch.rand(num_data, dim).mul_(2 * bound).add_(-bound))
        # The normalising constants Z, estimated once from the first batch (-1: not yet).
        self.register_buffer("z_student", torch.tensor(-1.0))
        self.register_buffer("z_teacher", torch.tensor(-1.0))

    def sample(self, index: torch.Tensor) -> torch.Tensor:
        """Slots to score per image: (B, 1 + K), its own slot first, then K uniform others."""
        draws = torch.randint(0, self.num_data - 1, (index.shape[0], self.negatives), device=index.device)
        draws = draws + (draws >= index[:, None]).long()  # skip the image's own slot
        return torch.cat([index[:, None], draws], dim=1)

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """NCE scores of the student's embeddings against the teacher memory, and the reverse.

        Args:
            student: (B, dim) normalised student embeddings.
            teacher: (B, dim) normalised teacher embeddings.
            slots: (B, 1 + K) from `sample`.

        Returns:
            ``(student_scores, teacher_scores)``, each (B, 1 + K).
        """
        scores_s = torch.exp(torch.einsum("bkd,bd->bk", self.memory_teacher[slots], student) / self.temperature)
        scores_t = torch.exp(torch.einsum("bkd,bd->bk", self.memory_student[slots], teacher) / self.temperature)
        with torch.no_grad():  # set once; a where, not an if, so the step never waits for the device
            for z, scores in ((self.z_student, scores_s), (self.z_teacher, scores_t)):
                z.copy_(torch.where(z < 0, scores.mean() * self.num_data, z))
        return scores_s / self.z_student, scores_t / self.z_teacher

    @torch.no_grad()
    def update(self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor) -> None:
        """Move the images' slots toward their new embeddings: normalise(m * slot + (1 - m) * v)."""
        m = self.momentum
        for memory, v in ((self.memory_student, student), (self.memory_teacher, teacher)):
            moved = memory[index] * m + v.detach().to(memory.dtype) * (1 - m)
            memory[index] = F.normalize(moved, dim=1)

    def extra_repr(self) -> str:
        return (f"num_data={self.num_data}, negatives={self.negatives}, temperature={self.temperature}, "
                f"momentum={self.momentum}")


class CRDLoss(nn.Module):
    """Embedding heads (linear + L2 norm, one per model) and the contrast memory.

    Args:
        student_dim: Width of the student's pooled feature.
        teacher_dim: Width of the teacher's pooled feature.
        dim: Embedding width.
        num_data: Training images.
        negatives: K.
        temperature: NCE temperature.
        momentum: Memory momentum.
    """

    def __init__(self, student_dim: int, teacher_dim: int, dim: int, num_data: int, negatives: int,
                 temperature: float, momentum: float) -> None:
        super().__init__()
        self.embed_student = nn.Linear(student_dim, dim)
        self.embed_teacher = nn.Linear(teacher_dim, dim)
        self.memory = ContrastMemory(dim, num_data, negatives, temperature, momentum)

    def forward(
        self, student: torch.Tensor, teacher: torch.Tensor, index: torch.Tensor,
        gather: bool = True,
    ) -> torch.Tensor:
        """CRD loss of pooled features (the teacher's detached) of images ``index``; updates the memory.

        Args:
            student: (B, student_dim).
            teacher: (B, teacher_dim).
            index: (B,) the images' positions in the training set.
            gather: under DDP, update the memory with every process's images, so the
                memories stay equal on every process.
        """
        from .objective import gather_batch

        v_s = F.normalize(self.embed_student(student), dim=1)
        v_t = F.normalize(self.embed_teacher(teacher.detach()), dim=1)
        slots = self.memory.sample(index)
        scores_s, scores_t = self.memory(v_s, v_t, slots)
        n = self.memory.num_data
        loss = crd_nce_loss(scores_s, n) + crd_nce_loss(scores_t, n)
        if gather:
            all_s, _ = gather_batch(v_s.detach())
            all_t, _ = gather_batch(v_t.detach())
            all_index, _ = gather_batch(index)
        else:
            all_s, all_t, all_index = v_s, v_t, index
        self.memory.update(all_s, all_t, all_index)
        return loss
