"""A softmax temperature that can be learned."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LearnableTemperature"]


class LearnableTemperature(nn.Module):
    """Temperature T stored as log(1 / T), CLIP style, and bounded to [min_value, max_value].

    Learning log(1/T) keeps T positive and makes steps relative, not absolute. The bound
    stops T from collapsing to 0 (exploding logits); the range is widened to contain
    the initial value. The bound is a straight-through clamp: the value is clamped but
    the gradient passes as if it were not, so a parameter pushed past a bound still
    learns and comes back as soon as the loss asks for it (a plain clamp has zero
    gradient out there and would hold it at the bound for good).

    Args:
        init: Initial temperature, > 0.
        learnable: A parameter when True, a buffer (fixed T) when False.
        min_value: Smallest temperature.
        max_value: Largest temperature.
    """

    def __init__(
        self, init: float, learnable: bool = True, min_value: float = 0.01, max_value: float = 1.0
    ) -> None:
        super().__init__()
        if init <= 0:
            raise ValueError(f"temperature must be > 0, got {init}")
        self.min_value = min(min_value, init)
        self.max_value = max(max_value, init)
        log_inv = torch.tensor(math.log(1.0 / init), dtype=torch.float32)
        if learnable:
            self.log_inv_temperature = nn.Parameter(log_inv)
        else:
            self.register_buffer("log_inv_temperature", log_inv)

    @property
    def learnable(self) -> bool:
        return isinstance(self.log_inv_temperature, nn.Parameter)

    def forward(self) -> torch.Tensor:
        """Return T as a 0-d tensor."""
        raw = self.log_inv_temperature
        bounded = raw.clamp(math.log(1.0 / self.max_value), math.log(1.0 / self.min_value))
        log_inv = raw + (bounded - raw).detach()  # clamped value, identity gradient
        return torch.exp(-log_inv)

    def extra_repr(self) -> str:
        return f"learnable={self.learnable}, range=[{self.min_value}, {self.max_value}]"
