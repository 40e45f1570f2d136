"""Reading a stage table is bounded: linear work in a model's depth, and a size limit checked before tracing."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from tasgen.arch.introspect import read_stage_table
from tasgen.arch.models import create_timm_model


def _vit(depth: int) -> nn.Module:
    with torch.device("meta"):
        return create_timm_model("vit_tiny_patch16_224", image_size=32, embed_dim=24, depth=depth, num_heads=2,
                                 num_classes=3)


def _module_visits(model: nn.Module) -> int:
    """Modules the reader walks through ``model.named_modules()`` / ``model.modules()`` while reading it."""
    visits = 0
    walk = model.named_modules

    def counting(*args: object, **kwargs: object) -> Iterator[tuple[str, nn.Module]]:
        nonlocal visits
        for item in walk(*args, **kwargs):
            visits += 1
            yield item

    model.named_modules = counting  # type: ignore[method-assign]
    read_stage_table(model, name="vit", source="timm", image_size=32)
    return visits


def test_reading_walks_the_model_a_fixed_number_of_times() -> None:
    # A walk of the module tree per feature_info entry made reading quadratic in depth
    # (ViT depth 100/200/400: 11.5/19/41 s). Four times the depth may cost four times the walk, not sixteen.
    shallow, deep = _vit(8), _vit(32)
    ratio = _module_visits(deep) / _module_visits(shallow)
    modules = sum(1 for _ in deep.modules()) / sum(1 for _ in shallow.modules())
    assert ratio <= 1.2 * modules, (ratio, modules)
