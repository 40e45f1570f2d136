"""Export: the student file loads into a fresh timm model (or Backbone) and gives the run's logits."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import load_file

from tasgen.backbone import Backbone
from tasgen.spec.schema import BackboneSpec
from tasgen.train import export_student, restore_run, train

from .conftest import STUDENT

VIT = {"timm": "vit_tiny_patch16_224",
       "kwargs": {"img_size": 32, "patch_size": 8, "depth": 4, "embed_dim": 64, "num_heads": 2}}


@pytest.mark.parametrize("student", ["vit", "backbone"])
def test_exported_student_loads_as_is(make_spec, tmp_path, student):
    # The ViT student runs OFA, so its exit branches read token (NLC) stage outputs too.
    spec = make_spec(student=VIT, distill={"method": "ofa"}) if student == "vit" else make_spec()
    result = train(spec, quiet=True)
    out = export_student(result.run_dir, tmp_path / "student.safetensors")
    state = load_file(out)

    if student == "vit":
        fresh = timm.create_model(VIT["timm"], num_classes=10, **VIT["kwargs"])
    else:
        fresh = Backbone.from_spec(BackboneSpec.model_validate(STUDENT), num_classes=10, img_size=32)
    fresh.load_state_dict(state)  # strict: nothing missing, nothing extra
    fresh.eval()

    setup, _ = restore_run(result.run_dir, "best")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(x), setup.trained_model(x))
