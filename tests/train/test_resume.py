"""Resume: an interrupted run continues bit-identically; a changed plan is refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tasgen.checkpoint import CheckpointError
from tasgen.train import TrainError, train


def _student(run_dir):
    return {k: v for k, v in load_file(run_dir / "last" / "model.safetensors").items() if k.startswith("student.")}


@pytest.mark.parametrize("method", ["tas", "ofa"])
def test_interrupted_and_resumed_equals_uninterrupted(make_spec, tmp_path, method):
    # Mixup, hflip and EMA make sure every RNG and every piece of state is restored.
    over = {"distill": {"method": method},
            "data": {"augment": {"mixup": 0.2, "hflip": 0.5}},
            "train": {"ema": {"enabled": True, "decay": 0.9}}}
    whole = train(make_spec("a.yaml", name="whole", **over), quiet=True)

    parts = make_spec("b.yaml", name="parts", **over)
    first = train(parts, max_epochs=1, quiet=True)
    assert first.epochs_done == 1 and not first.finished
    second = train(parts, resume=True, quiet=True)
    assert second.finished

    a, b = _student(whole.run_dir), _student(second.run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = [json.loads(line) for line in (second.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    whole_rows = [json.loads(line) for line in (whole.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["loss"] == whole_rows[-1]["loss"]


def test_changed_plan_is_refused_with_both_hashes(make_spec):
    first = train(make_spec(name="x", train={"epochs": 2}), max_epochs=1, quiet=True)
    old = json.loads((first.run_dir / "plan.json").read_text())["hash"]
    changed = make_spec(name="x", distill={"feature": {"dim": 8}})
    with pytest.raises(TrainError) as err:
        train(changed, resume=True, quiet=True)
    from tasgen.compiler import plan_spec

    new = plan_spec(changed).hash
    assert old != new and old in str(err.value) and new in str(err.value)


def test_resume_without_checkpoint(make_spec):
    with pytest.raises(TrainError, match="nothing to resume"):
        train(make_spec(name="fresh"), resume=True, quiet=True)


def test_corrupt_checkpoint_is_reported(make_spec):
    result = train(make_spec(name="c"), max_epochs=1, quiet=True)
    state = result.run_dir / "last" / "state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"state\.pt fails its integrity check \(100 bytes"):
        train(make_spec(name="c"), resume=True, quiet=True)
    weights = result.run_dir / "last" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])  # 64 flipped bytes of tensor data, same size
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"model\.safetensors fails its integrity check \(its sha256"):
        train(make_spec(name="c"), resume=True, quiet=True)


def test_resumed_teacher_fit_reports_its_own_accuracy(make_spec):
    # A resumed teacher fit once repeated epoch 1's accuracy in every later row.
    # Enough data and steps that the accuracy moves from epoch to epoch.
    over = {"data": {"num_samples": 400, "image_size": 16},
            "train": {"epochs": 3, "optimizer": {"name": "adamw", "lr": 0.003}}}
    whole = train(make_spec("a.yaml", name="whole", **over), role="teacher", quiet=True)
    parts = make_spec("b.yaml", name="parts", **over)
    train(parts, role="teacher", max_epochs=1, quiet=True)
    resumed = train(parts, role="teacher", resume=True, quiet=True)

    def rows(result):
        return [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]

    assert [r["teacher_top1"] for r in rows(resumed)] == [r["teacher_top1"] for r in rows(whole)]
    assert len({r["teacher_top1"] for r in rows(whole)}) > 1
