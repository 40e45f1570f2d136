"""The spec-defined Backbone answers timm's model interface."""

from __future__ import annotations

import math

import pytest
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

from tasgen.backbone import Backbone
from tasgen.blocks import ConvBlock, PatchEmbed
from tasgen.spec.schema import BackboneSpec

IMG = 32

SPECS = {
    "conv": dict(
        stem=dict(kind="conv", channels=8, stride=2),
        stages=[
            dict(mixer="conv", channels=8, depth=1),
            dict(mixer="conv", channels=16, depth=2, stride=2),
            dict(mixer="conv", channels=32, depth=1, stride=2),
        ],
    ),
    "vit": dict(
        stem=dict(kind="patch", channels=32, stride=4),
        stages=[
            dict(mixer="attention", channels=32, depth=1),
            dict(mixer="attention", channels=64, depth=2, stride=2, heads=4),
        ],
    ),
    "mixer": dict(
        stem=dict(kind="patch", channels=16, stride=4),
        stages=[
            dict(mixer="mlp", channels=16, depth=2),
            dict(mixer="mlp", channels=32, depth=1, stride=2),
        ],
    ),
    "mixed": dict(
        stem=dict(kind="conv", channels=8, stride=2),
        stages=[
            dict(mixer="conv", channels=8, depth=1),
            dict(mixer="conv", channels=16, depth=1, stride=2),
            dict(mixer="attention", channels=32, depth=1, stride=2),
            dict(mixer="mlp", channels=32, depth=1, stride=2, mlp_ratio=2.0),
        ],
        head_dropout=0.1,
    ),
}


def build(name: str, num_classes: int = 10, img_size: int = IMG) -> Backbone:
    torch.manual_seed(0)
    return Backbone.from_spec(BackboneSpec.model_validate(SPECS[name]), num_classes, img_size)


def stage_mixers(stage: nn.Module) -> set[str]:
    kinds = set()
    for module in stage.modules():
        if hasattr(module, "qkv"):
            kinds.add("attention")
        if hasattr(module, "mlp_tokens"):
            kinds.add("mlp")
    return kinds


@pytest.mark.parametrize("name", SPECS)
def test_forward_shapes(name: str) -> None:
    model = build(name)
    x = torch.randn(2, 3, IMG, IMG)
    feats = model.forward_features(x)
    last = model.feature_info[-1]
    side = IMG // last["reduction"]
    assert feats.shape == (2, model.num_features, side, side)
    assert model.num_features == last["num_chs"]
    assert model(x).shape == (2, 10)
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)


@pytest.mark.parametrize("name", SPECS)
def test_intermediates_agree_with_feature_info(name: str) -> None:
    model = build(name).eval()
    x = torch.randn(2, 3, IMG, IMG)
    final, inters = model.forward_intermediates(x)
    assert len(inters) == len(model.feature_info) == len(model.stages)
    for i, (feat, info) in enumerate(zip(inters, model.feature_info, strict=True)):
        assert set(info) == {"module", "num_chs", "reduction"}
        assert info["module"] == f"stages.{i}"
        side = math.ceil(IMG / info["reduction"])
        assert feat.shape == (2, info["num_chs"], side, side)
        assert torch.isfinite(feat).all()
    torch.testing.assert_close(final, model.forward_features(x))


def test_intermediates_options() -> None:
    model = build("mixed").eval()
    x = torch.randn(2, 3, IMG, IMG)
    _, everything = model.forward_intermediates(x)

    last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert len(last_two) == 2
    torch.testing.assert_close(last_two[0], everything[2])

    picked = model.forward_intermediates(x, indices=[0, -1], intermediates_only=True)
    torch.testing.assert_close(picked[0], everything[0])
    torch.testing.assert_close(picked[1], everything[3])

    normed = model.forward_intermediates(x, indices=[3], norm=True, intermediates_only=True)
    torch.testing.assert_close(normed[0], model.forward_features(x))

    final, early = model.forward_intermediates(x, indices=[1], stop_early=True)
    torch.testing.assert_close(final, everything[1])
    torch.testing.assert_close(early[0], everything[1])

    nhwc = model.forward_intermediates(x, indices=1, output_fmt="NHWC", intermediates_only=True)
    torch.testing.assert_close(nhwc[0], everything[3].permute(0, 2, 3, 1))

    for bad in (0, 5, [4], [-5]):
        with pytest.raises(ValueError, match="out of range|last"):
            model.forward_intermediates(x, indices=bad)


@pytest.mark.parametrize("name", SPECS)
def test_forward_is_head_of_features(name: str) -> None:
    model = build(name).eval()
    x = torch.randn(2, 3, IMG, IMG)
    torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))


@pytest.mark.parametrize("name", SPECS)
def test_backward_reaches_every_parameter(name: str) -> None:
    model = build(name)
    model(torch.randn(2, 3, IMG, IMG)).logsumexp(-1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", SPECS)
def test_meta_device(name: str) -> None:
    # tasgen reads models on the meta device: no weights, no compute.
    with torch.device("meta"):
        model = Backbone.from_spec(BackboneSpec.model_validate(SPECS[name]), 10, IMG)
        inters = model.forward_intermediates(torch.empty(2, 3, IMG, IMG), intermediates_only=True)
    assert [t.shape[1] for t in inters] == [info["num_chs"] for info in model.feature_info]


def test_forward_features_calls_stem_stages_norm_in_order() -> None:
    model = build("mixed")
    names = ["stem", *(f"stages.{i}" for i in range(len(model.stages))), "norm"]
    called: list[str] = []
    for name in names:
        model.get_submodule(name).register_forward_hook(lambda m, i, o, n=name: called.append(n))
    model.forward_features(torch.randn(1, 3, IMG, IMG))
    assert called == names


def test_mixer_kind_is_detectable() -> None:
    conv = build("conv")
    assert not any(hasattr(m, "qkv") or hasattr(m, "mlp_tokens") for m in conv.modules())
    mixed = build("mixed")
    assert [stage_mixers(s) for s in mixed.stages] == [set(), set(), {"attention"}, {"mlp"}]
    qkv = [m.qkv for m in mixed.stages[2].modules() if hasattr(m, "qkv")]
    assert qkv and all(
        isinstance(q, nn.Linear) and q.out_features == 3 * q.in_features for q in qkv
    )
    assert all(stage_mixers(s) == {"attention"} for s in build("vit").stages)
    assert all(stage_mixers(s) == {"mlp"} for s in build("mixer").stages)


def test_first_element_downsamples() -> None:
    mixed = build("mixed")
    assert isinstance(mixed.stages[0][0], ConvBlock) and len(mixed.stages[0]) == 1
    assert mixed.stages[1][0].conv1.conv.stride == (2, 2)
    assert isinstance(mixed.stages[2][0], PatchEmbed) and len(mixed.stages[2]) == 2
    assert isinstance(mixed.stages[3][0], PatchEmbed)
    vit = build("vit")
    assert not isinstance(vit.stages[0][0], PatchEmbed) and len(vit.stages[0]) == 1
    assert isinstance(vit.stages[1][0], PatchEmbed)


def test_heads() -> None:
    vit = build("vit")
    heads = [m.num_heads for m in vit.modules() if hasattr(m, "qkv")]
    assert heads == [1, 4, 4]  # default 32 // 32, then the spec's explicit 4
    spec = BackboneSpec.model_validate(
        dict(stem=dict(channels=8), stages=[dict(mixer="attention", channels=80, depth=1)])
    )
    model = Backbone.from_spec(spec, 10, IMG)
    assert [m.num_heads for m in model.modules() if hasattr(m, "qkv")] == [2]


def test_mlp_stage_needs_an_exact_grid() -> None:
    with pytest.raises(ValueError, match=r"stages\[1\].*img_size 36.*stride 8"):
        build("mixer", img_size=36)
    # Conv and attention stages accept any size.
    assert build("vit", img_size=30)(torch.randn(1, 3, 30, 30)).shape == (1, 10)
    with pytest.raises(ValueError, match="64 tokens"):
        build("mixer")(torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize(
    ("kind", "stride", "side"), [("conv", 1, 9), ("conv", 3, 3), ("conv", 8, 2), ("patch", 3, 3)]
)
def test_stem_strides(kind: str, stride: int, side: int) -> None:
    spec = BackboneSpec.model_validate(
        dict(
            stem=dict(kind=kind, channels=8, stride=stride),
            stages=[dict(mixer="conv", channels=8, depth=1)],
        )
    )
    model = Backbone.from_spec(spec, 10, 9)
    assert model.forward_features(torch.randn(1, 3, 9, 9)).shape == (1, 8, side, side)
    assert model.feature_info[0]["reduction"] == stride


def test_timm_attributes() -> None:
    model = build("mixed")
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, IMG, IMG)
    assert cfg["mean"] == IMAGENET_DEFAULT_MEAN and cfg["std"] == IMAGENET_DEFAULT_STD
    assert cfg["num_classes"] == model.num_classes == 10
    assert isinstance(model.norm, nn.LayerNorm) and isinstance(build("conv").norm, nn.BatchNorm2d)
    assert model.get_classifier() is model.head.fc

    model.reset_classifier(5)
    assert model.num_classes == cfg["num_classes"] == 5
    assert model(torch.randn(2, 3, IMG, IMG)).shape == (2, 5)
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, IMG, IMG)).shape == (2, model.num_features)


def test_compile_fullgraph_matches_eager() -> None:
    model = build("mixed").eval()
    x = torch.randn(2, 3, IMG, IMG)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
