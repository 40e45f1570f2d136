"""Stage tables agree with real forwards, across every timm family."""

from __future__ import annotations

import subprocess
import sys

import pytest
import timm
import torch

from tasgen.arch.introspect import ModelReadError, detect_mixer, read_stage_table
from tasgen.arch.models import create_model, stage_table
from tasgen.emit.staged import StagedModel, main
from tasgen.spec.schema import BackboneSpec, TimmModelSpec
from tests.models import MORE_TIMM_MODELS, TIMM_MODELS

SIZE = 64


def _real(spec: TimmModelSpec, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(spec, num_classes=7, image_size=size).eval()


REAL_FORWARD = [(n, k, {}, SIZE) for n, k in TIMM_MODELS] + MORE_TIMM_MODELS
TAPPED_BEFORE_DOWNSAMPLING = {"efficientvim_m1"}


@pytest.mark.parametrize(("name", "kind", "kwargs", "size"), REAL_FORWARD, ids=[c[0] for c in REAL_FORWARD])
def test_table_matches_real_forward(name: str, kind: str, kwargs: dict, size: int) -> None:
    spec = TimmModelSpec(timm=name, kwargs=kwargs)
    table = stage_table(spec, role="student", num_classes=7, image_size=size, use_cache=False)
    assert table.kind == kind
    assert table.staged, table.staged_error
    model = _real(spec, size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        idx = list(range(len(model.feature_info)))
        inter = model.forward_intermediates(x, indices=idx, intermediates_only=True)
        by_module = {info["module"]: out for info, out in zip(model.feature_info, inter, strict=True)}
        view = StagedModel(model, table)
        h = view.stem(x)
        for stage in table.stages:
            h = view.stage(stage.index, h)
            end = stage.modules[-1]
            ref = by_module.get(end)
            if ref is not None and name in TAPPED_BEFORE_DOWNSAMPLING:
                # timm taps the map before the stage's own downsampling (the last stage has
                # none); the table records what the next stage reads, coarser and wider.
                assert stage.reduction >= size / ref.shape[-1] and stage.channels >= ref.shape[1]
                downsampled = stage.index < len(table.stages)
                assert (stage.reduction > size / ref.shape[-1]) == downsampled
            elif ref is not None:  # channels and reduction agree with timm's own intermediates
                assert ref.shape[1] == stage.channels
                assert size / ref.shape[-1] == pytest.approx(stage.reduction, rel=0.15)
            out = main(h)  # a graph-read stage may pass more than its output on (H and W, a class token)
            assert isinstance(h, torch.Tensor) != bool(stage.extras)
            if stage.layout == "NCHW":
                assert out.shape[1] == stage.channels
            elif stage.layout == "NHWC":
                assert out.shape[-1] == stage.channels
            else:
                assert out.shape[-1] == stage.channels and out.dim() == 3
        logits, feat = view.head(h)
        # Running the parts in turn is the model's own forward.
        torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-4)
        # f (default pool avg): the final feature map, as wide as the table says.
        assert feat.shape == (2, table.head.feature_channels)
        final = model.forward_features(x)
        if table.head.feature_item is not None:  # a list the head fuses, the final map in it
            final = final[table.head.feature_item]
        channels_axis = 1 if table.head.feature_layout in ("NCHW", "NCL") else -1
        assert final.shape[channels_axis] == table.head.feature_channels
        head_logits, pre_logits = StagedModel(model, table, pool="head").head(h)
        assert pre_logits.shape == (2, table.head.num_features)
        torch.testing.assert_close(head_logits, logits)  # one head pass gives the same logits
    assert table.head.num_classes == 7
    assert table.params == sum(p.numel() for p in model.parameters())
    mixers = [s.mixer for s in table.stages]
    assert (kind == "cnn") == (set(mixers) == {"conv"})
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize(("name", "layout"), [("resnet18", "NCHW"), ("swin_tiny_patch4_window7_224", "NHWC"),
                                              ("deit_tiny_patch16_224", "NLC"), ("mixer_s16_224", "NLC")])
def test_stem_layout(name: str, layout: str) -> None:
    table = stage_table(TimmModelSpec(timm=name), role="s", num_classes=10, image_size=224, use_cache=False)
    assert table.stem.layout == layout


@pytest.mark.parametrize("size", [64, 96])
def test_stem_layout_where_its_width_equals_its_side(size: int) -> None:
    # efficientnet_b0's stem gives 32 channels at 32x32 from 64 px: shape equality cannot tell.
    table = stage_table(TimmModelSpec(timm="efficientnet_b0"), role="s", num_classes=10, image_size=size,
                        use_cache=False)
    assert (table.stem.layout, table.stem.channels, table.stem.reduction) == ("NCHW", 32, 2)


def test_layout_follows_the_axes_that_grow_with_the_input() -> None:
    from tasgen.arch.introspect import _ambiguous, _layout

    assert _layout((1, 32, 32, 32), None, None, (64, 64), grown=(1, 64, 64, 32))[:3] == ("NHWC", 32, 2)
    assert _layout((1, 32, 32, 32), None, None, (64, 64), grown=(1, 32, 64, 64))[:3] == ("NCHW", 32, 2)
    assert _ambiguous((1, 32, 32, 32), None) and not _ambiguous((1, 24, 16, 16), None)


def test_isotropic_models_read_as_four_equal_groups() -> None:
    table = stage_table(TimmModelSpec(timm="deit_tiny_patch16_224"), role="s", num_classes=10, image_size=SIZE)
    assert [s.depth for s in table.stages] == [3, 3, 3, 3]
    assert table.stem.modules == ["patch_embed", "_pos_embed", "patch_drop", "norm_pre"]
    assert table.stem.prefix_tokens == 1 and table.stem.layout == "NLC"


def test_prefix_tokens_are_counted() -> None:
    distilled = stage_table(TimmModelSpec(timm="deit_tiny_distilled_patch16_224"), role="s", num_classes=10,
                            image_size=SIZE)
    registers = stage_table(TimmModelSpec(timm="vit_tiny_patch16_224", kwargs={"reg_tokens": 4}), role="s",
                            num_classes=10, image_size=SIZE)
    assert distilled.stages[0].prefix_tokens == 2
    assert registers.stages[0].prefix_tokens == 5


def test_feature_encoder_without_classifier_is_refused_with_its_cause_and_a_model_with_a_head() -> None:
    # mobilenetv5_300m_enc (Gemma 3n's vision tower) reads fine as a graph; only its head is missing.
    with pytest.raises(ModelReadError, match=r"feature encoder without a classifier .* such as mobilenetv5_300m"):
        stage_table(TimmModelSpec(timm="mobilenetv5_300m_enc"), role="t", num_classes=10, image_size=SIZE,
                    use_cache=False)


def test_hybrid_is_read_stage_by_stage() -> None:
    table = stage_table(TimmModelSpec(timm="coatnet_nano_rw_224"), role="s", num_classes=10, image_size=SIZE)
    assert [s.mixer for s in table.stages] == ["conv", "conv", "attention", "attention"]
    assert table.local_stages == 2


def test_model_with_work_between_modules_is_read_as_a_graph() -> None:
    # LeViT flattens its stem's output to tokens in forward_features, between modules:
    # the graph reader keeps that glue in the stem part.
    table = stage_table(TimmModelSpec(timm="levit_128s"), role="s", num_classes=10, image_size=224, use_cache=False)
    assert table.staged and table.reader == "graph"
    assert [s.channels for s in table.stages] == [128, 256, 384]
    assert table.stem.layout == "NLC" and table.stem.modules == ["stem"]


@pytest.mark.parametrize(("name", "size", "sentence"), [
    ("crossvit_tiny_240", 240, "runs several branches side by side .*; tasgen needs one chain of stages"),
    ("hrnet_w18_small", 64, "feature_info names 'stage1', which is not one of its modules .*parallel branches"),
])
def test_model_that_is_not_one_chain_is_refused_with_a_sentence(name: str, size: int, sentence: str) -> None:
    with pytest.raises(ModelReadError, match=sentence) as err:
        stage_table(TimmModelSpec(timm=name), role="s", num_classes=10, image_size=size, use_cache=False)
    assert "\n" not in str(err.value)


def test_stage_end_inside_a_residual_block_moves_to_the_block_end() -> None:
    # Xception41's feature_info ends its first stage at blocks.1.stack.act3, before the
    # block's strided conv and its shortcut: the cut moves past the add, so the stage holds
    # all of blocks.1 and records the reduction really there (8, not feature_info's 4).
    table = stage_table(TimmModelSpec(timm="xception41"), role="s", num_classes=10, image_size=64, use_cache=False)
    assert table.reader == "graph"
    stage = table.stages[0]
    assert "blocks.1.shortcut" in stage.modules
    assert not any(m.startswith("blocks.1.") for s in table.stages[1:] for m in s.modules)
    assert stage.carry == [stage.cut] and stage.cut.startswith("add")
    assert (stage.channels, stage.reduction) == (256, 8)


def test_stage_described_backbone_is_read_the_same_way() -> None:
    spec = BackboneSpec.model_validate({
        "stem": {"channels": 16, "stride": 2},
        "stages": [{"mixer": "conv", "channels": 16, "depth": 2},
                   {"mixer": "conv", "channels": 32, "depth": 1, "stride": 2},
                   {"mixer": "mlp", "channels": 48, "depth": 1, "stride": 2},
                   {"mixer": "attention", "channels": 64, "depth": 2, "stride": 2}],
    })
    table = stage_table(spec, role="student", num_classes=5, image_size=32, use_cache=False)
    assert table.source == "spec" and table.model == "spec:student"
    assert [s.mixer for s in table.stages] == ["conv", "conv", "mlp", "attention"]
    assert [s.channels for s in table.stages] == [16, 32, 48, 64]
    assert [s.reduction for s in table.stages] == [2, 4, 8, 16]
    assert [s.depth for s in table.stages] == [2, 1, 1, 2]


def test_mixer_detection_ignores_channel_attention() -> None:
    se = timm.create_model("seresnet18", num_classes=10)  # squeeze-excite: no q/k/v
    assert detect_mixer([se]) == "conv"
    assert detect_mixer([torch.nn.MultiheadAttention(8, 2)]) == "attention"


def test_tables_are_read_on_the_meta_device() -> None:
    with torch.device("meta"):
        model = timm.create_model("vit_base_patch16_224", num_classes=10)
    table = read_stage_table(model, name="vit_base_patch16_224", source="timm", image_size=224)
    assert table.params > 80_000_000  # counted, never allocated
    assert all(p.is_meta for p in model.parameters())


def test_cached_table_needs_no_torch(tmp_path) -> None:
    env_dir = tmp_path / "cache"
    code = (
        "import os, sys; os.environ['TASGEN_CACHE_DIR'] = sys.argv[1]\n"
        "from tasgen.arch.models import stage_table\n"
        "from tasgen.spec.schema import TimmModelSpec\n"
        "t = stage_table(TimmModelSpec(timm='resnet18'), role='s', num_classes=10, image_size=64)\n"
        "print('torch' in sys.modules, len(t.stages))\n"
    )
    first = subprocess.run([sys.executable, "-c", code, str(env_dir)], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, "-c", code, str(env_dir)], capture_output=True, text=True, check=True)
    assert first.stdout.split() == ["True", "4"]
    assert second.stdout.split() == ["False", "4"]


@pytest.mark.parametrize(("name", "kwargs", "one_pass"), [
    ("resnet18", {}, True),
    ("deit_tiny_patch16_224", {"depth": 2}, True),
    ("samvit_base_patch16", {"depth": 2, "embed_dim": 64, "num_heads": 2, "window_size": 2,
                             "global_attn_indexes": [1]}, True),  # get_classifier() is the whole head: its fc
    ("volo_d1_224", {}, False),  # adds an auxiliary head's score to its classifier's output
    ("deit_tiny_distilled_patch16_224", {"depth": 2}, False),  # two classifiers
    ("efficientvim_m1", {}, False),  # one classifier per stage
])
def test_pool_head_runs_the_head_once_only_where_the_classifier_makes_the_logits(
    name: str, kwargs: dict, one_pass: bool
) -> None:
    spec = TimmModelSpec(timm=name, kwargs=kwargs)
    table = stage_table(spec, role="s", num_classes=7, image_size=SIZE)
    model = _real(spec, SIZE)
    view = StagedModel(model, table, pool="head")
    assert (view._classifier is not None) == one_pass
    calls: list[bool] = []
    original = model.forward_head
    model.forward_head = lambda *a, **k: calls.append(k.get("pre_logits", False)) or original(*a, **k)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        logits, _ = view.forward(x)
    del model.forward_head
    # One pass where the classifier makes the logits; else a second pass for them.
    assert calls == ([True] if one_pass else [True, False])
    with torch.no_grad():
        torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-4)
