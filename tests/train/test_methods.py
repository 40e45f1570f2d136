"""Every method trains for two epochs and writes its run folder; the teacher never changes."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tasgen.plan import Plan
from tasgen.train import train

EXPECTED_PREFIXES = {
    "tas": {"student", "assistant", "objective"},
    "ofa": {"student", "branches"},
    "kd": {"student"},
    "none": {"student"},
    "fitnet": {"student", "hint"},
    "crd": {"student", "objective"},
    "dkd": {"student"},
    "dist": {"student"},
}
BASELINE_TERMS = {"fitnet": {"loss.fitnet.hint"}, "crd": {"loss.crd"}, "dkd": {"loss.dkd.tckd", "loss.dkd.nckd"},
                  "dist": {"loss.dist.inter", "loss.dist.intra"}}


@pytest.mark.parametrize("method", ["tas", "ofa", "kd", "none", "fitnet", "crd", "dkd", "dist"])
def test_two_epochs_write_metrics_and_checkpoints(make_spec, teacher_weights, method):
    result = train(make_spec(distill={"method": method}), quiet=True)
    run = result.run_dir
    assert result.finished and result.epochs_done == 2

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    with open(run / "metrics.csv") as f:
        csv_rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in csv_rows] == [1, 2]
    for key in ("lr", "loss", "loss.ce", "student_top1", "student_top5", "images_per_s", "seconds"):
        assert key in rows[-1]
    # Model FLOPs utilisation, against the GPU's matmul peak (not logged on the CPU).
    assert all(("mfu" in r) == torch.cuda.is_available() for r in rows)
    assert all(math.isfinite(r["mfu"]) and r["mfu"] > 0 for r in rows if "mfu" in r)
    assert ("assistant_top1" in rows[-1]) == (method == "tas")
    assert ("teacher_top1" in rows[0]) == (method != "none")
    if method == "tas":
        assert {"loss.teacher_assistant.feature", "loss.assistant_student.logit"} <= set(rows[-1])
    if method == "ofa":
        assert {"loss.ofa.exit1", "loss.ofa.exit2", "loss.ofa.final"} <= set(rows[-1])
    assert BASELINE_TERMS.get(method, set()) <= set(rows[-1])
    assert all(math.isfinite(v) for r in rows for k, v in r.items() if k.startswith("loss"))

    for folder in ("last", "best"):
        weights = load_file(run / folder / "model.safetensors")
        assert {k.split(".")[0] for k in weights} == EXPECTED_PREFIXES[method]
        state = torch.load(run / folder / "state.pt", weights_only=True)
        assert state["plan_hash"] == Plan.from_json((run / "plan.json").read_text()).hash
        assert {"optimizer", "scheduler", "rng", "epoch", "step"} <= set(state)
    assert yaml.safe_load((run / "spec.yaml").read_text())["distill"]["method"] == method
    assert not list(run.glob("*.tmp")) and not list(run.glob("*.old"))


def test_teacher_is_not_trained(make_spec, teacher_weights):
    """The teacher's weights (and BN statistics) after distilling are those of its file."""
    from tasgen.train import restore_run

    result = train(make_spec(), quiet=True)
    setup, _ = restore_run(result.run_dir, "last")
    before = load_file(teacher_weights)
    after = setup.system.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_teacher_role_fits_once_and_student_runs_reuse_it(tmp_path):
    import shutil

    from tasgen.spec.load import load_spec

    from .conftest import spec_dict, write_spec_file

    spec = load_spec(write_spec_file(tmp_path, spec_dict(tmp_path, train={"teacher_epochs": 1})))
    fit = train(spec, role="teacher", quiet=True)
    run = fit.run_dir.parent
    assert fit.finished and fit.epochs == 1 and (run / "teacher.safetensors").is_file()
    shutil.rmtree(fit.run_dir)  # the fit's own folder; a second fit would recreate it
    result = train(spec, quiet=True)
    assert result.finished and not fit.run_dir.exists()
    assert "teacher_top1" in json.loads((run / "metrics.jsonl").read_text().splitlines()[0])


def test_the_loop_tells_a_method_its_epoch(make_spec, teacher_weights, monkeypatch):
    """DKD's warm-up reads the 1-based epoch the loop sets before each epoch."""
    from tasgen.losses.baselines import DKDObjective

    seen: list[int] = []
    original = DKDObjective.set_epoch
    monkeypatch.setattr(DKDObjective, "set_epoch", lambda self, epoch: (seen.append(epoch), original(self, epoch)))
    train(make_spec(distill={"method": "dkd"}), quiet=True)
    assert seen == [1, 2]


def test_a_crd_run_restores_its_memory_at_the_size_it_was_trained_with(make_spec, teacher_weights):
    from tasgen.train import restore_run

    result = train(make_spec(distill={"method": "crd"}), quiet=True)
    setup, _ = restore_run(result.run_dir, "last")
    memory = setup.objective.crd.memory
    assert memory.num_data == 46 and memory.negatives == 45  # the synthetic training split, clamped
