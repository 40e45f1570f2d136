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


def test_exported_assistant_loads_into_the_emitted_source_in_a_fresh_process(make_spec, tmp_path):
    import subprocess
    import sys

    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from tasgen_cli.app import app

    result = train(make_spec(train={"epochs": 1}), quiet=True)
    runner = CliRunner()
    weights, source = tmp_path / "assistant.safetensors", tmp_path / "assistant.py"
    done = runner.invoke(app, ["export", str(result.run_dir), "--part", "assistant", "-o", str(weights)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["emit", str(result.run_dir / "spec.yaml"), "-o", str(source)])
    assert done.exit_code == 0, done.output

    setup, _ = restore_run(result.run_dir, "best")
    system = setup.system.eval()
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        expected = system.assistant(system.norm_student(x))  # the local member here is the student
        torch.testing.assert_close(expected, system(x)["assistant"][0])
    save_file({"x": system.norm_student(x).contiguous(), "expected": expected.contiguous()}, tmp_path / "io.safetensors")
    code = (
        "import sys, torch\n"
        "from safetensors.torch import load_file\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from assistant import Assistant\n"
        "a = Assistant().eval()\n"
        "a.load_state_dict(load_file(sys.argv[1] + '/assistant.safetensors'))  # strict, as is\n"
        "io = load_file(sys.argv[1] + '/io.safetensors')\n"
        "with torch.no_grad():\n"
        "    out = a(io['x'])\n"
        "assert 'tasgen' not in sys.modules\n"
        "torch.testing.assert_close(out, io['expected'], rtol=1e-5, atol=1e-5)\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_export_of_the_assistant_is_refused_where_there_is_none(make_spec, tmp_path):
    from typer.testing import CliRunner

    from tasgen_cli.app import app

    result = train(make_spec(distill={"method": "kd"}, train={"epochs": 1}), quiet=True)
    runner = CliRunner()
    done = runner.invoke(app, ["export", str(result.run_dir), "--part", "assistant", "-o", str(tmp_path / "a.st")])
    assert done.exit_code == 2 and "only a tas run has an assistant" in done.output
    assert "Traceback" not in done.output
    done = runner.invoke(app, ["export", str(result.run_dir), "--part", "assistant", "--format", "onnx",
                               "-o", str(tmp_path / "a.onnx")])
    assert done.exit_code == 2 and "--part assistant writes safetensors" in done.output
