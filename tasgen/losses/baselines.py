"""The objectives of the baselines FitNet, CRD, DKD and DIST: cross-entropy plus their terms.

Each reads its hyper-parameters from its ``distill.<method>`` section (the context's
params); docs/design.md lists the defaults and where they come from.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .crd import CRDLoss
from .dist import dist_terms
from .dkd import dkd_terms
from .method import MethodContext, MethodObjective, Outputs

__all__ = ["CRDObjective", "DISTObjective", "DKDObjective", "FitNetObjective"]


class FitNetObjective(MethodObjective):
    """CE + weight * MSE(regressed student stage, teacher stage), from the system's ``hint`` output."""

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context, ["fitnet.hint"])
        self.weight = context.params.weight

    def distill(self, outputs: Outputs, target: torch.Tensor, index: torch.Tensor | None) -> dict[str, torch.Tensor]:
        learner, hint = outputs["hint"]
        return {"fitnet.hint": self.weight * F.mse_loss(learner.float(), hint.detach().float())}


class CRDObjective(MethodObjective):
    """CE + weight * CRD on the pooled final features (teacher's detached); updates the memory.

    Needs the images' positions in the training set (``index``) for the memory slots.
    """

    needs_index = True

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context, ["crd"])
        p = context.params
        if context.num_train is None:
            raise ValueError("method crd sizes its memory by the training images: num_train is needed")
        self.weight = p.weight
        self.crd = CRDLoss(context.feature_dims["student"], context.feature_dims["teacher"], p.dim,
                           context.num_train, p.negatives, p.temperature, p.momentum)

    def distill(self, outputs: Outputs, target: torch.Tensor, index: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if index is None:
            raise ValueError("method crd needs the images' positions in the training set (index)")
        student, teacher = outputs["student"][1].float(), outputs["teacher"][1].float()
        return {"crd": self.weight * self.crd(student, teacher, index)}


class DKDObjective(MethodObjective):
    """CE + warm-up * (alpha * TCKD + beta * NCKD), warm-up = min(epoch / warmup_epochs, 1)."""

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context, ["dkd.tckd", "dkd.nckd"])
        p = context.params
        self.alpha, self.beta, self.temperature, self.warmup = p.alpha, p.beta, p.temperature, p.warmup_epochs

    def warmup_factor(self) -> torch.Tensor:
        """min(epoch / warmup_epochs, 1); 1 without warm-up."""
        if self.warmup == 0:
            return torch.ones_like(self.epoch)
        return (self.epoch / self.warmup).clamp(max=1.0)

    def distill(self, outputs: Outputs, target: torch.Tensor, index: torch.Tensor | None) -> dict[str, torch.Tensor]:
        student, teacher = outputs["student"][0].float(), outputs["teacher"][0].detach().float()
        tckd, nckd = dkd_terms(student, teacher, target, self.temperature)
        ramp = self.warmup_factor()
        return {"dkd.tckd": ramp * self.alpha * tckd.mean(), "dkd.nckd": ramp * self.beta * nckd.mean()}


class DISTObjective(MethodObjective):
    """CE + beta * inter-class + gamma * intra-class relation loss (each times tau^2)."""

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context, ["dist.inter", "dist.intra"])
        p = context.params
        self.beta, self.gamma, self.temperature = p.beta, p.gamma, p.temperature

    def distill(self, outputs: Outputs, target: torch.Tensor, index: torch.Tensor | None) -> dict[str, torch.Tensor]:
        student, teacher = outputs["student"][0].float(), outputs["teacher"][0].detach().float()
        inter, intra = dist_terms(student, teacher, self.temperature)
        return {"dist.inter": self.beta * inter, "dist.intra": self.gamma * intra}
