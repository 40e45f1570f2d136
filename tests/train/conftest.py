"""Tiny specs for training tests: synthetic 32 px images, models of a few thousand parameters."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

TEACHER = {
    "stem": {"channels": 16},
    "stages": [
        {"mixer": "conv", "channels": 16, "depth": 1},
        {"mixer": "conv", "channels": 32, "depth": 1, "stride": 2},
        {"mixer": "attention", "channels": 32, "depth": 1, "stride": 2, "heads": 2},
    ],
}
STUDENT = {
    "stem": {"channels": 8},
    "stages": [
        {"mixer": "conv", "channels": 8, "depth": 1},
        {"mixer": "conv", "channels": 16, "depth": 1, "stride": 2},
        {"mixer": "conv", "channels": 32, "depth": 1, "stride": 2},
    ],
}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        # A whole model (timm name or stage list) replaces the base model; other mappings merge.
        whole = isinstance(value, dict) and ("timm" in value or "stages" in value)
        nested = isinstance(value, dict) and isinstance(out.get(key), dict) and not whole
        out[key] = merge(out[key], value) if nested else value
    return out


def spec_dict(tmp_path: Path, **over: Any) -> dict[str, Any]:
    base = {
        "name": "run",
        "teacher": TEACHER,
        "student": STUDENT,
        # infonce spelled out: this CNN student of a teacher with an attention stage is the pair's local
        # member, where auto would drop the InfoNCE terms the tests exercise (test_methods tests auto)
        "distill": {"method": "tas", "feature": {"dim": 16, "loss": "infonce"}},
        "data": {"dataset": "synthetic", "image_size": 32, "batch_size": 16, "num_samples": 64},
        "train": {
            "epochs": 2,
            "output_dir": str(tmp_path / "runs"),
            "log_interval": 1,
            "optimizer": {"name": "sgd", "lr": 0.05},
            "schedule": {"name": "cosine", "warmup_epochs": 1},
        },
    }
    return merge(base, over)


def write_spec_file(tmp_path: Path, data: dict[str, Any], file: str = "spec.yaml") -> Path:
    path = tmp_path / file
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def teacher_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of TEACHER (10 classes, 32 px): a stand-in for a trained teacher."""
    import torch

    from tasgen.arch.models import create_model
    from tasgen.checkpoint import save_weights
    from tasgen.spec.schema import BackboneSpec

    torch.manual_seed(123)
    model = create_model(BackboneSpec.model_validate(TEACHER), num_classes=10, image_size=32)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_weights(model.state_dict(), path)
    return path


@pytest.fixture
def make_spec(tmp_path: Path, teacher_weights: Path):
    """``make_spec(**overrides) -> LoadedSpec`` with the random teacher's weights as checkpoint."""
    from tasgen.spec.load import load_spec

    def make(file: str = "spec.yaml", **over: Any):
        data = spec_dict(tmp_path, teacher={"checkpoint": str(teacher_weights)}, **over)
        return load_spec(write_spec_file(tmp_path, data, file))

    return make
