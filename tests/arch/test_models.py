"""Building timm models at the spec's image size."""

from __future__ import annotations

import torch

from tasgen.arch.models import create_timm_model


def test_a_vit_is_built_for_the_image_size() -> None:
    with torch.device("meta"):
        vit = create_timm_model("vit_tiny_patch16_224", image_size=64, num_classes=10)
    assert vit.patch_embed.img_size == (64, 64)
    assert vit.pos_embed.shape[1] == 1 + (64 // 16) ** 2


def test_a_cnn_takes_no_image_size() -> None:
    with torch.device("meta"):
        cnn = create_timm_model("resnet10t", image_size=64, num_classes=10)
    assert cnn.fc.out_features == 10


def test_an_img_size_in_the_kwargs_wins() -> None:
    with torch.device("meta"):
        vit = create_timm_model("vit_tiny_patch16_224", image_size=64, img_size=96, num_classes=10)
    assert vit.patch_embed.img_size == (96, 96)


def test_a_model_built_from_scratch_has_a_pretrained_cfg_true_of_it() -> None:
    from tasgen.arch.models import create_model
    from tasgen.spec.schema import TimmModelSpec

    model = create_model(TimmModelSpec(timm="vit_tiny_patch16_224"), num_classes=10, image_size=64, device="meta")
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (3, 64, 64) and cfg["num_classes"] == 10 and cfg["classifier"] == "head"
    assert not {"tag", "license", "hf_hub_id", "url", "crop_pct"} & set(cfg), cfg
    started = create_model(TimmModelSpec(timm="resnet18", pretrained=True), num_classes=10, image_size=64, device="meta")
    assert started.pretrained_cfg["input_size"] == (3, 64, 64) and "license" in started.pretrained_cfg
