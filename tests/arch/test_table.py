"""The rules a stage table's parts follow: layouts and what a part's entries name."""

from __future__ import annotations

from tasgen.arch.models import create_model, stage_table
from tasgen.arch.table import POS_EMBED_METHOD, is_method, resolve, sample_shape, token_grid
from tasgen.spec.schema import TimmModelSpec


def test_the_grid_is_rounded_up_as_strided_convolutions_do() -> None:
    assert token_grid(224, 16) == (14, 14)
    assert token_grid(64, 3) == (22, 22)
    assert token_grid((64, 48), 32) == (2, 2)
    assert token_grid((65, 48), 16) == (5, 3)


def test_each_layout_places_channels_and_prefix_tokens() -> None:
    assert sample_shape("NCHW", 96, (7, 5)) == (96, 7, 5)
    assert sample_shape("NHWC", 96, (7, 5)) == (7, 5, 96)
    assert sample_shape("NLC", 192, (14, 14), prefix_tokens=5) == (5 + 196, 192)  # class + 4 register tokens
    assert sample_shape("NLC", 192, (14, 14)) == (196, 192)


def test_a_vits_stem_names_its_pos_embed_method_and_resolves_to_it() -> None:
    from torch import nn

    spec = TimmModelSpec(timm="vit_tiny_patch16_224", kwargs={"depth": 4})
    table = stage_table(spec, role="student", num_classes=10, image_size=64)
    assert table.has_pos_embed and is_method(POS_EMBED_METHOD)
    model = create_model(spec, num_classes=10, image_size=64, device="meta")
    calls = {path: resolve(model, path) for path in table.stem.modules}
    assert calls.pop(POS_EMBED_METHOD) == model._pos_embed  # the bound method, not a module
    assert calls and all(isinstance(c, nn.Module) for c in calls.values())
    assert all(not is_method(p) and isinstance(resolve(model, p), nn.Module) for s in table.stages for p in s.modules)


def test_a_cnn_has_no_pos_embed() -> None:
    table = stage_table(TimmModelSpec(timm="resnet18"), role="student", num_classes=10, image_size=64)
    assert not table.has_pos_embed
    assert not any(is_method(p) for p in table.stem.modules)
