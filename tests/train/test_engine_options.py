"""The engine's options combine: AdamW, step/constant schedules, accumulation, clipping, bf16, EMA."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from tasgen.train import export_student, train


@pytest.mark.parametrize("schedule", ["step", "constant"])
def test_options_run(make_spec, tmp_path, schedule):
    spec = make_spec(train={
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.05},
        "schedule": {"name": schedule, "warmup_epochs": 1, "decay_epochs": 1},
        "accumulate": 2, "grad_clip": 1.0, "precision": "bf16", "ema": {"enabled": True, "decay": 0.5},
    })
    result = train(spec, quiet=True)
    row = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["step"] == 2  # 3 batches per epoch, 2 per update: 1 update per epoch
    assert "student_ema_top1" in row
    assert any(k.startswith("ema.") for k in load_file(result.run_dir / "last" / "model.safetensors"))
    out = export_student(result.run_dir, tmp_path / "ema.safetensors", ema=True)
    assert load_file(out).keys() == {k.removeprefix("student.") for k in
                                     load_file(result.run_dir / "last" / "model.safetensors") if k.startswith("student.")}
