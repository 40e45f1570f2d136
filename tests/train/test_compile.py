"""The trainer's torch.compile path (backend aot_eager: no C++ toolchain needed)."""

from __future__ import annotations

import json
import math

from tasgen.train import train


def test_compiled_training_runs_an_epoch(make_spec):
    result = train(make_spec(train={"compile": True}), max_epochs=1, compile_backend="aot_eager", quiet=True)
    row = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert result.epochs_done == 1 and math.isfinite(row["loss"])
    assert (result.run_dir / "last" / "model.safetensors").is_file()
