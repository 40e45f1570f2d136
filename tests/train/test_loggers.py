"""train.loggers: jsonl always, csv on request, TensorBoard and Weights & Biases (offline) when installed."""

from __future__ import annotations

import importlib.util
import json

import pytest

from tasgen.spec import SpecError
from tasgen.train import train
from tasgen.train.errors import TrainError
from tasgen.train.loggers import flat_hparams, plan_text

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is an optional extra (tasgen[tensorboard])"
)
needs_wandb = pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is an optional extra (tasgen[wandb])")


@needs_tensorboard
def test_tensorboard_gets_step_and_epoch_scalars_the_plan_and_the_spec(make_spec):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    loaded = make_spec(train={"loggers": ["jsonl", "tensorboard"]})
    result = train(loaded, quiet=True)
    run = result.run_dir
    assert (run / "metrics.jsonl").is_file() and not (run / "metrics.csv").exists()
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"step/loss", "step/lr", "step/img/s", "step/ce", "epoch/student_top1", "epoch/loss",
            "epoch/assistant_top1"} <= scalars, scalars
    epochs = [e.step for e in events.Scalars("epoch/student_top1")]
    assert epochs == [1, 2]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert events.Scalars("epoch/student_top1")[-1].value == pytest.approx(rows[-1]["student_top1"])
    steps = [e.step for e in events.Scalars("step/loss")]
    assert steps == sorted(steps) and steps[-1] == rows[-1]["step"]
    texts = {tag: events.Tensors(tag)[0].tensor_proto.string_val[0].decode() for tag in events.Tags()["tensors"]
             if tag.endswith("text_summary")}
    plan_tag = next(tag for tag in texts if tag.startswith("plan"))
    assert "| bridge |" in texts[plan_tag] and loaded.spec.name in texts[plan_tag]
    # The spec as hyperparameters: TensorBoard's hparams plugin data sits in the same folder.
    hparams = EventAccumulator(str(run / "tensorboard"))
    hparams.Reload()
    assert "_hparams_/session_start_info" in hparams.summary_metadata or any(
        "hparams" in tag for tag in hparams.Tags()["tensors"]
    )


def test_flat_hparams_and_plan_text(make_spec):
    from tasgen.compiler import plan_spec

    loaded = make_spec()
    flat = flat_hparams(loaded.spec)
    assert flat["train.optimizer.lr"] == 0.05 and flat["distill.method"] == "tas"
    assert all(isinstance(v, bool | int | float | str) for v in flat.values())
    text = plan_text(plan_spec(loaded))
    assert text.count("\n| ") >= 5 and "teacher_student" in text


@needs_wandb
def test_wandb_offline_run_is_written_in_the_run_folder(make_spec, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    loaded = make_spec(train={"epochs": 1, "loggers": ["jsonl", "csv", "wandb"], "wandb_project": "tasgen-tests"})
    result = train(loaded, quiet=True)
    import wandb

    wandb.teardown()  # the wandb service process writes the run file; stop it so that the file is complete
    offline = sorted((result.run_dir / "wandb").glob("offline-run-*"))
    assert offline, list((result.run_dir / "wandb").iterdir())
    log = b"".join(f.read_bytes() for f in offline[-1].glob("*.wandb"))  # wandb's own record of the run
    for key in (b"train.optimizer.lr", b"step/loss", b"epoch/student_top1", b"plan_hash"):
        assert key in log, key
    assert (result.run_dir / "metrics.csv").is_file()


def test_loggers_are_validated(write_spec, make_spec):
    with pytest.raises(SpecError, match=r"train.loggers: .*jsonl must stay"):
        make_spec(train={"loggers": ["csv"]})
    with pytest.raises(SpecError, match="csv listed more than once"):
        make_spec(train={"loggers": ["jsonl", "csv", "csv"]})
    with pytest.raises(SpecError, match=r"train.loggers.1"):
        make_spec(train={"loggers": ["jsonl", "mlflow"]})


def test_a_missing_logger_package_names_the_extra(make_spec, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(TrainError, match=r"pip install 'tasgen\[wandb\]'"):
        train(make_spec(train={"loggers": ["jsonl", "wandb"]}), quiet=True)


@needs_tensorboard
def test_only_rank_0_logs(make_spec, tmp_path):
    from tasgen.compiler import plan_spec
    from tasgen.train.loggers import Loggers

    loaded = make_spec(train={"loggers": ["jsonl", "tensorboard"]})
    loggers = Loggers(loaded.spec, plan_spec(loaded), tmp_path, role="student", active=False)
    loggers.step(1, {"loss": 1.0})
    loggers.epoch({"epoch": 1, "step": 1, "student_top1": 50.0})
    loggers.close()
    assert not (tmp_path / "tensorboard").exists()
