"""The module a training step runs: a system's forward, then the objective."""

from __future__ import annotations

import torch
from torch import nn


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
