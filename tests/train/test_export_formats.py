"""Export as a timm folder (local-dir:, Hub push up to the call) and as ONNX; a local-dir model as a teacher."""

from __future__ import annotations

import importlib.util
import json

import pytest
import timm
import torch
from typer.testing import CliRunner

from tasgen.spec import SpecError
from tasgen.train import restore_run, train
from tasgen.train.errors import TrainError
from tasgen.train.export_formats import ONNX_ATOL, export_onnx, export_timm
from tasgen_cli.app import app

from .conftest import spec_dict, write_spec_file

VIT = {"timm": "vit_tiny_patch16_224",
       "kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}}


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory, teacher_weights):
    """A one-epoch KD run with a small timm ViT student."""
    from tasgen.spec.load import load_spec

    tmp = tmp_path_factory.mktemp("vit-run")
    data = spec_dict(tmp, teacher={"checkpoint": str(teacher_weights)}, student=VIT,
                     distill={"method": "kd"}, train={"epochs": 1})
    return train(load_spec(write_spec_file(tmp, data)), quiet=True).run_dir


def _trained_logits(run_dir, x):
    setup, _ = restore_run(run_dir, "best", device="cpu")
    with torch.no_grad():
        return setup.trained_model(x)


def test_timm_folder_loads_with_local_dir_and_gives_the_runs_logits(vit_run, tmp_path):
    folder = export_timm(vit_run, tmp_path / "student-timm")
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors"}
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and config["num_classes"] == 10
    assert config["model_args"]["img_size"] in (32, [32, 32]) and config["model_args"]["embed_dim"] == 32
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    # Trained from scratch on digits: nothing of timm's default ImageNet weights (tag, licence, hub id, crop).
    assert not {"tag", "license", "hf_hub_id", "url", "crop_pct"} & set(config["pretrained_cfg"]), config
    assert config["pretrained_cfg"]["num_classes"] == 10 and len(config["pretrained_cfg"]["mean"]) == 3
    model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), _trained_logits(vit_run, x))
    # timm's data config carries the student's own normalisation.
    data_config = timm.data.resolve_data_config({}, model=model)
    assert data_config["input_size"] == (3, 32, 32) and len(data_config["mean"]) == 3


def test_push_to_hub_calls_timm_with_the_model(vit_run, tmp_path, monkeypatch):
    calls = []

    def fake_push(model, repo_id, **kwargs):  # the network call itself is not tested
        calls.append((model, repo_id, kwargs))

    monkeypatch.setattr(timm.models, "push_to_hf_hub", fake_push)
    export_timm(vit_run, tmp_path / "pushed", push_to_hub="me/tas-student")
    (model, repo, kwargs), = calls
    assert repo == "me/tas-student" and kwargs["safe_serialization"] is True
    assert kwargs["data_config"]["input_size"] == (3, 32, 32)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), _trained_logits(vit_run, x))

    def failing_push(model, repo_id, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(timm.models, "push_to_hf_hub", failing_push)
    with pytest.raises(TrainError, match=r"could not push to the Hub repo me/tas-student .*hf auth login.*was written"):
        export_timm(vit_run, tmp_path / "pushed2", push_to_hub="me/tas-student")
    assert (tmp_path / "pushed2" / "model.safetensors").is_file()


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                    reason="onnx/onnxruntime are an optional extra (pip install 'tasgen[onnx]')")
def test_onnx_export_matches_pytorch_in_onnxruntime(vit_run, tmp_path):
    import onnxruntime

    path, diff = export_onnx(vit_run, tmp_path / "student.onnx")
    assert diff is not None and diff <= ONNX_ATOL
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 3, 32, 32)  # another batch size than the export's: the batch axis is dynamic
    (logits,) = session.run(["logits"], {"images": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(logits), _trained_logits(vit_run, x), atol=ONNX_ATOL, rtol=0)


def test_cli_export_formats(vit_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(vit_run), "--format", "timm", "-o", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert "local-dir:" in result.output and (tmp_path / "t" / "config.json").is_file()
    result = runner.invoke(app, ["export", str(vit_run), "-o", str(tmp_path / "s.safetensors")])
    assert result.exit_code == 0 and (tmp_path / "s.safetensors").is_file()
    result = runner.invoke(app, ["export", str(vit_run), "--push-to-hub", "me/x", "-o", str(tmp_path / "p")])
    assert result.exit_code == 2 and "add --format timm" in result.output


def test_backbone_student_has_no_timm_folder(make_spec, tmp_path):
    run = train(make_spec(distill={"method": "none"}, train={"epochs": 1}), quiet=True).run_dir
    with pytest.raises(TrainError, match="stage-described backbone"):
        export_timm(run, tmp_path / "x")


def test_local_dir_model_written_by_tasgen_is_a_teacher_offline(vit_run, tmp_path, monkeypatch):
    """The exported folder as `timm: local-dir:...` with pretrained weights: planned and loaded, no network."""
    import tasgen

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = export_timm(vit_run, tmp_path / "vit-teacher")
    student = {"timm": "resnet18"}
    data = spec_dict(tmp_path, teacher={"timm": f"local-dir:{folder}", "pretrained": True}, student=student,
                     distill={"method": "kd"})
    compiled = tasgen.compile(write_spec_file(tmp_path, data), device="cpu")
    x = torch.rand(2, 3, 32, 32)
    teacher = compiled.system.teacher.eval()
    mean, std = compiled.plan.teacher.mean, compiled.plan.teacher.std
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(teacher(normalised), _trained_logits(vit_run, normalised))


def test_external_names_are_validated_without_the_network(tmp_path, write_spec):
    from tasgen.spec.load import load_spec

    def problems(name: str) -> str:
        data = spec_dict(tmp_path, teacher={"timm": name})
        with pytest.raises(SpecError) as err:
            load_spec(write_spec_file(tmp_path, data))
        return str(err.value)

    assert "local-dir model folder not found" in problems(f"local-dir:{tmp_path / 'nothing'}")
    (tmp_path / "empty").mkdir()
    assert "has no config.json" in problems(f"local-dir:{tmp_path / 'empty'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"architecture": "resnet1B"}))
    assert "unknown timm model 'resnet1B'" in problems(f"local-dir:{tmp_path / 'bad'}")
    assert "not a Hub model id" in problems("hf-hub:no-org")
    assert "no pretrained tag 'augreg_in21k_ft_in1kk'" in problems("vit_small_patch16_224.augreg_in21k_ft_in1kk")
    # Well-formed names pass validation (the Hub is only asked when the model is built).
    from tasgen.spec._timm_names import unknown_timm_model

    assert unknown_timm_model("hf-hub:timm/resnet18.a1_in1k") is None
    assert unknown_timm_model("vit_small_patch16_224.augreg_in21k_ft_in1k") is None


def test_hub_model_offline_is_one_clear_located_line(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from tasgen.compiler import plan_spec
    from tasgen.spec.load import load_spec

    # huggingface_hub reads these when imported: set its constants too. An empty cache: nothing to fall back on.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-empty"))
    data = spec_dict(tmp_path, teacher={"timm": "hf-hub:timm/resnet18.a1_in1k"})
    loaded = load_spec(write_spec_file(tmp_path, data))
    with pytest.raises(SpecError, match=r"spec.yaml:\d+:\d+: teacher.timm: cannot fetch hf-hub:timm/resnet18.a1_in1k "
                                        r"from the Hugging Face Hub .*local-dir:PATH"):
        plan_spec(loaded, use_cache=False)


def test_hub_model_without_network_fails_after_one_short_probe_not_the_hubs_retries(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from tasgen.arch import models
    from tasgen.compiler import plan_spec
    from tasgen.spec.load import load_spec

    # Not in offline mode, an empty cache, and a Hub whose name does not resolve (.invalid never does).
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-empty"))
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "https://hub.invalid")
    monkeypatch.setattr(models, "HUB_PROBE_TIMEOUT_S", 0.5)
    data = spec_dict(tmp_path, teacher={"timm": "hf-hub:timm/resnet18.a1_in1k"})
    with pytest.raises(SpecError, match=r"teacher.timm: cannot fetch hf-hub:timm/resnet18.a1_in1k from the Hugging "
                                        r"Face Hub \(hub.invalid:443 does not answer within 0.5 s .*local-dir:PATH"):
        plan_spec(load_spec(write_spec_file(tmp_path, data)), use_cache=False)
