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


def test_auto_feature_loss_trains_a_local_student_with_the_logit_terms_alone(make_spec, teacher_weights):
    """The tests' CNN student of a teacher with an attention stage is the pair's local member: under
    ``distill.feature.loss: auto`` its run has the three logit terms, no InfoNCE term and no projector."""
    from tasgen.planner import local_student

    result = train(make_spec(distill={"method": "tas", "feature": {"loss": "auto"}}), quiet=True)
    plan = Plan.from_json((result.run_dir / "plan.json").read_text())
    assert local_student(plan.local_role) and plan.feature["loss"] == "none"
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    terms = {k for k in rows[-1] if k.startswith("loss.")}
    assert {f"loss.{p}.logit" for p in ("teacher_student", "teacher_assistant", "assistant_student")} <= terms
    assert not any(k.endswith(".feature") for k in terms)
    weights = load_file(result.run_dir / "last" / "model.safetensors")
    assert {k.split(".")[0] for k in weights} == {"student", "assistant"}  # no projector, no temperature to train


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


def test_teacher_role_fits_once_and_student_runs_reuse_it(tmp_path, teacher_store):
    import shutil

    from tasgen.spec.load import load_spec
    from tasgen.teacher_store import TeacherStore

    from .conftest import spec_dict, write_spec_file

    spec = load_spec(write_spec_file(tmp_path, spec_dict(tmp_path, train={"teacher_epochs": 1})))
    fit = train(spec, role="teacher", quiet=True)
    stored = fit.run_dir.parent
    assert fit.finished and fit.epochs == 1 and (stored / "teacher.safetensors").is_file()
    assert stored.parent == teacher_store and [t.folder for t in TeacherStore().teachers()] == [stored]
    assert not (tmp_path / "runs" / spec.spec.name).exists()  # the fit lives in the store, not in a run
    shutil.rmtree(fit.run_dir)  # the fit's own folder; a second fit would recreate it
    result = train(spec, quiet=True)
    assert result.finished and not fit.run_dir.exists()
    assert "teacher_top1" in json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[0])
    again = train(spec, role="teacher", quiet=True)  # stored: read, not fitted again
    assert again.finished and again.last["teacher_top1"] == fit.last["teacher_top1"] and not fit.run_dir.exists()


def test_runs_of_other_names_and_folders_share_the_stored_teacher(tmp_path, monkeypatch):
    import tasgen.train.run as run_module
    from tasgen.spec.load import load_spec

    from .conftest import spec_dict, write_spec_file

    fits = []
    real_fit = run_module.train_loop

    def counting(setup, **kwargs):  # noqa: ANN001, ANN003, ANN202
        fits.append(setup.role)
        return real_fit(setup, **kwargs)

    monkeypatch.setattr(run_module, "train_loop", counting)
    path = write_spec_file(tmp_path, spec_dict(tmp_path, train={"teacher_epochs": 1, "epochs": 1}))
    first = train(load_spec(path), quiet=True)
    other = train(load_spec(path, ["name=other", f"train.output_dir={tmp_path / 'elsewhere'}",
                                   "data.num_workers=0", "train.log_interval=3"]), quiet=True)
    assert fits == ["teacher", "student", "student"]  # one fit, two students
    assert other.run_dir == tmp_path / "elsewhere" / "other" and first.run_dir != other.run_dir
    train(load_spec(path, ["name=seed1", "seed=1"]), quiet=True)  # another seed is another teacher
    assert fits[3:] == ["teacher", "student"]


def test_a_teacher_barely_above_chance_is_warned_about(make_spec, monkeypatch):
    import tasgen.train.loop as loop_module
    from tasgen.teacher_store import weak_teacher_message

    assert weak_teacher_message(15.0, 10) is not None and "chance 10.00%" in weak_teacher_message(15.0, 10)
    assert weak_teacher_message(90.0, 10) is None and weak_teacher_message(30.0, 100) is None
    real = loop_module._evaluate

    def weak_teacher(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the teacher alone scores 15 %
        scores = real(*args, **kwargs)
        return {**scores, "teacher_top1": 15.0} if args[-1] == {"teacher": "teacher"} else scores

    monkeypatch.setattr(loop_module, "_evaluate", weak_teacher)
    with pytest.warns(UserWarning, match="only 15.00% top-1 on 10 classes"):
        train(make_spec(train={"epochs": 1}), quiet=True)



@pytest.mark.parametrize("distill", [{"method": "dkd"}, {"method": "tas", "warmup_epochs": 3}])
def test_the_loop_tells_a_method_its_epoch(distill, make_spec, teacher_weights, monkeypatch):
    """DKD's warm-up and TAS's (distill.warmup_epochs) read the 1-based epoch the loop sets before each epoch."""
    from tasgen.losses import TASObjective
    from tasgen.losses.baselines import DKDObjective

    objective_class = DKDObjective if distill["method"] == "dkd" else TASObjective
    seen: list[int] = []
    original = objective_class.set_epoch
    monkeypatch.setattr(objective_class, "set_epoch", lambda self, epoch: (seen.append(epoch), original(self, epoch)))
    train(make_spec(distill=distill), quiet=True)
    assert seen == [1, 2]


def test_a_crd_run_restores_its_memory_at_the_size_it_was_trained_with(make_spec, teacher_weights):
    from tasgen.train import restore_run

    result = train(make_spec(distill={"method": "crd"}), quiet=True)
    setup, _ = restore_run(result.run_dir, "last")
    memory = setup.objective.crd.memory
    assert memory.num_data == 46 and memory.negatives == 45  # the synthetic training split, clamped


def test_kd_temperature_auto_is_chosen_from_the_teacher_recorded_and_kept_on_resume(make_spec, monkeypatch):
    """kd's ``temperature: auto`` trains exactly as the number it chose (losses equal to the last bit); the
    metrics record the teacher's confidence and the temperature; a resumed run keeps them without measuring."""
    import tasgen.train.loop as loop

    def rows_of(name: str, logits: dict, **kw) -> list[dict]:
        spec = make_spec(name=name, distill={"method": "tas", "feature": {"loss": "auto"}, "logits": logits})
        result = train(spec, quiet=True, **kw)
        return [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]

    def same_training(a: list[dict], b: list[dict]) -> bool:
        keys = [k for k in a[-1] if k.startswith("loss") or k.endswith("top1")]
        return all(x[k] == y[k] for x, y in zip(a, b, strict=True) for k in keys)

    # the random teacher is unsure: its mean top probability is far under 0.99 and above 0.01
    unsure = rows_of("unsure", {"auto_threshold": 0.99})
    confidence = unsure[0]["teacher_confidence"]
    assert 0.1 <= confidence < 0.99 and [r["logit_temperature"] for r in unsure] == [1.0, 1.0]
    assert all(r["teacher_confidence"] == confidence for r in unsure)
    sure = rows_of("sure", {"auto_threshold": 0.01})
    assert sure[0]["teacher_confidence"] == confidence and sure[-1]["logit_temperature"] == 4.0
    at_one, at_four = rows_of("t1", {"temperature": 1.0}), rows_of("t4", {"temperature": 4.0})
    assert "logit_temperature" not in at_one[0]  # a number given: nothing measured
    assert same_training(unsure, at_one) and same_training(sure, at_four) and not same_training(at_one, at_four)

    rows_of("resumed", {"auto_threshold": 0.99}, max_epochs=1)
    monkeypatch.setattr(loop, "teacher_confidence", lambda *a, **k: pytest.fail("a resume measures again"))
    resumed = rows_of("resumed", {"auto_threshold": 0.99}, resume=True)
    assert same_training(resumed, unsure) and resumed[-1]["logit_temperature"] == 1.0
