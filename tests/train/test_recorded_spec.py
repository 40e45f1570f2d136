"""A run's spec.yaml is the record of what it trained: a resume under another spec says what
differs and needs --accept-changes; a run without last/ is resumed from best/."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from tasgen.train import TrainError, train
from tasgen_cli.app import app


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _files(run_dir):
    # The run's files but the pictures (`tasgen train` redraws them) and the lock.
    return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")
            if p.is_file() and p.name != ".lock" and not p.name.startswith("curves.")}


def test_resume_under_another_spec_is_refused_then_accepted_explicitly(make_spec, tmp_path):
    short = make_spec(name="short", train={"epochs": 1})
    first = train(short, quiet=True)
    before = _files(first.run_dir)

    longer = make_spec("longer.yaml", name="short")  # the spec file's 2 epochs, without the override
    with pytest.raises(TrainError) as err:
        train(longer, resume=True, quiet=True)
    message = str(err.value)
    assert "train.epochs (1 -> 2)" in message and "--accept-changes" in message
    assert f"tasgen train {first.run_dir / 'spec.yaml'} --resume" in message
    assert _files(first.run_dir) == before  # nothing trained, nothing written

    out = CliRunner().invoke(app, ["train", str(longer.path), "--resume"])
    assert out.exit_code == 2 and "Traceback" not in out.output and "train.epochs (1 -> 2)" in out.output
    # What the message offers: the record itself resumes (a finished run: nothing to do).
    out = CliRunner().invoke(app, ["train", str(first.run_dir / "spec.yaml"), "--resume"])
    assert out.exit_code == 0, out.output
    # A key the result does not depend on is no change.
    assert train(make_spec("log.yaml", name="short", train={"epochs": 1, "log_interval": 3}), resume=True,
                 quiet=True).epochs_done == 1
    assert _files(first.run_dir) == before

    with pytest.warns(UserWarning, match=r"under changed settings: train\.epochs \(1 -> 2\)"):
        extended = train(longer, resume=True, accept_changes=True, quiet=True)
    assert extended.finished and [r["epoch"] for r in _rows(extended.run_dir)] == [1, 2]
    assert yaml.safe_load((first.run_dir / "spec.yaml").read_text())["train"]["epochs"] == 2
    assert yaml.safe_load((first.run_dir / "spec.until-epoch-1.yaml").read_text())["train"]["epochs"] == 1
    # The second epoch ran on the new spec's schedule (not at the old schedule's floor).
    whole = train(make_spec("whole.yaml", name="whole"), quiet=True)
    assert _rows(extended.run_dir)[1]["lr"] == pytest.approx(_rows(whole.run_dir)[1]["lr"])


def test_a_stopped_run_resumes_with_recompute_switched_on(make_spec):
    """assistant.recompute changes how memory is spent, not a value: no refusal, no --accept-changes."""
    train(make_spec(name="rc"), max_epochs=1, quiet=True)
    resumed = train(make_spec(name="rc", assistant={"recompute": True}), resume=True, quiet=True)
    assert resumed.finished and [r["epoch"] for r in _rows(resumed.run_dir)] == [1, 2]


def test_resume_of_a_stopped_run_with_another_lr_is_refused(make_spec):
    train(make_spec(name="lr"), max_epochs=1, quiet=True)
    with pytest.raises(TrainError, match=r"train\.optimizer\.lr \(0\.05 -> 0\.01\)"):
        train(make_spec(name="lr", train={"optimizer": {"lr": 0.01}}), resume=True, quiet=True)
    assert train(make_spec(name="lr"), resume=True, quiet=True).finished


def test_a_teacher_fit_resumed_under_another_spec_names_its_own_record(make_spec):
    fit = train(make_spec(name="fit"), role="teacher", max_epochs=1, quiet=True)
    # The fit lives in the teacher store, keyed by what changes its weights (another lr is another
    # teacher): a change outside the key (EMA) finds this fit, and differs from its record.
    with pytest.raises(TrainError) as err:
        train(make_spec(name="fit", train={"ema": {"enabled": True}}), role="teacher", resume=True, quiet=True)
    assert "train.ema.enabled" in str(err.value)
    record = fit.run_dir / "spec.yaml"
    assert f"`tasgen train {record} --role teacher --resume`" in str(err.value)
    out = CliRunner().invoke(app, ["train", str(record), "--role", "teacher", "--resume"])
    assert out.exit_code == 0 and "finished" in out.output, out.output


def test_a_run_without_last_resumes_from_best_and_both_messages_say_so(make_spec):
    import shutil

    import torch
    from safetensors.torch import load_file

    spec = make_spec(name="lost")
    first = train(spec, max_epochs=1, quiet=True)
    shutil.rmtree(first.run_dir / "last")
    with pytest.raises(TrainError) as err:  # a fresh start points to --resume ...
        train(spec, quiet=True)
    assert "last/ is gone; its best/ holds epoch 1 of 2" in str(err.value) and "--resume continues it" in str(err.value)
    with pytest.warns(UserWarning, match="is gone: resuming from .*best"):  # ... and --resume does it
        resumed = train(spec, resume=True, quiet=True)
    assert resumed.finished and [r["epoch"] for r in _rows(resumed.run_dir)] == [1, 2]

    whole = train(make_spec("whole.yaml", name="whole"), quiet=True)
    a, b = (load_file(run / "last" / "model.safetensors") for run in (whole.run_dir, resumed.run_dir))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
