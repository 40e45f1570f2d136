"""The module a training step runs: a system's forward, then the objective."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tasgen.data.transforms import Normalize
from tasgen.emit.feature import head_pass
from tasgen.emit.system import Outputs


class Distiller(nn.Module):
    """``forward(images, targets) -> (total loss, {term: loss})``.

    One module, so that torch.compile and DDP see the models and the losses together.

    Args:
        system: images in [0, 1] -> ``{name: (logits, pooled feature)}``.
        objective: ``(outputs, targets) -> (total, terms)``.
    """

    def __init__(self, system: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.system = system
        self.objective = objective

    def forward(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.objective(self.system(images), targets)


class Solo(nn.Module):
    """One model alone, answering as a system does: ``{"student": (logits, pooled feature)}``.

    Used to fit a teacher with the same loop that distils a student (and to evaluate
    an EMA copy). Its feature is the classifier's input, from the same head pass as
    the logits; no loss reads it.

    Args:
        model: a timm model or a tasgen Backbone.
        mean, std: the normalisation it expects.
    """

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.norm = Normalize(tuple(mean), tuple(std))

    def forward(self, images: torch.Tensor) -> Outputs:
        return {"student": head_pass(self.model, self.model.forward_features(self.norm(images)))}
