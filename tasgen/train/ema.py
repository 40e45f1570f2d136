"""An exponential moving average of the trained model's weights (timm's ModelEmaV3)."""

from __future__ import annotations

from timm.utils import ModelEmaV3
from torch import nn

from tasgen.spec.schema import EmaSpec


def build_ema(model: nn.Module, spec: EmaSpec) -> ModelEmaV3 | None:
    """An EMA copy of ``model`` (update it with ``ema.update(model, step=n)``), or None when off."""
    if not spec.enabled:
        return None
    return ModelEmaV3(model, decay=spec.decay)
