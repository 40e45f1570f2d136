"""Bad input stops a run with a message for people, before training or without losing a checkpoint."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
import torch
from safetensors.torch import load_file

import tasgen.losses.objective as objective_module
from tasgen.train import TrainError, train


@pytest.mark.parametrize("log_interval", [1, 100])
def test_nan_loss_names_step_and_term_and_keeps_last_good_checkpoint(make_spec, monkeypatch, log_interval):
    real = objective_module.kd_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1  # 3 updates per epoch: the 4th is the first of epoch 2
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(objective_module, "kd_loss", poisoned)
    spec = make_spec(distill={"method": "kd"}, train={"log_interval": log_interval})
    with pytest.raises(TrainError) as err:
        train(spec, quiet=True)
    message = str(err.value)
    assert "step 4" in message and "teacher_student.logit" in message and "epoch 1" in message

    run = spec.spec.train.output_dir / spec.spec.name
    state = torch.load(run / "last" / "state.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in load_file(run / "last" / "model.safetensors").values())


def test_unwritable_output_folder_is_reported_before_training(make_spec, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the run folder should go")
    with pytest.raises(TrainError, match="cannot write the run folder"):
        train(make_spec(train={"output_dir": str(blocker)}), quiet=True)


def test_full_disk_is_reported_before_training(make_spec, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    spec = make_spec(distill={"method": "none"})
    with pytest.raises(TrainError, match="not enough disk space"):
        train(spec, quiet=True)
    assert not (spec.spec.train.output_dir / spec.spec.name / "metrics.jsonl").exists()


def test_pretrained_offline_says_to_supply_a_checkpoint(tmp_path, monkeypatch):
    from tasgen.spec.schema import TimmModelSpec
    from tasgen.train import load_pretrained, weights

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(weights, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(TrainError, match=r"teacher\.checkpoint"):
        load_pretrained(torch.nn.Linear(1, 1), TimmModelSpec(timm="resnet10t", pretrained=True),
                        role="teacher", num_classes=10, image_size=32)
