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


def test_each_batch_shape_compiles_as_a_static_graph():
    # torch's default retraces with a symbolic batch size at the second shape; that trace
    # of a whole system took minutes in a process that had compiled the same code before.
    import torch
    from torch import nn

    from tasgen.train.step import compile_module

    graphs: list[list[object]] = []

    def recording_backend(gm, example_inputs):
        graphs.append([t.shape if isinstance(t, torch.Tensor) else t for t in example_inputs])
        return gm.forward

    module = compile_module(nn.Linear(4, 2), True, recording_backend)
    for batch in (2, 3, 4, 3):
        assert module(torch.randn(batch, 4)).shape == (batch, 2)
    assert len(graphs) == 3  # one graph per distinct shape; the repeated one is reused
    values = [v for g in graphs for v in g]
    assert all(isinstance(v, torch.Size) and all(type(d) is int for d in v) for v in values), graphs
