"""train.eval_every: evaluation after every N-th epoch and the run's last; training is unchanged."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tasgen.run_metrics import evaluated_rows, read_metrics
from tasgen.study.figures import plot_run, plot_study
from tasgen.study.table import read_run
from tasgen.train import train
from tasgen.train.run_folder import RunFolder
from tasgen.train.run_summary import summarise_run


def test_the_same_weights_and_losses_whatever_the_evaluation_interval(make_spec):
    """Evaluating (or not) between epochs does not change what is trained: last/ and the losses agree."""
    every = train(make_spec(name="every", train={"epochs": 3}), quiet=True)
    sparse = train(make_spec(name="sparse", train={"epochs": 3, "eval_every": 2}), quiet=True)
    weights = load_file(every.run_dir / "last" / "model.safetensors")
    other = load_file(sparse.run_dir / "last" / "model.safetensors")
    assert weights.keys() == other.keys()
    for key, value in weights.items():
        torch.testing.assert_close(other[key], value, rtol=0, atol=0, msg=key)
    rows, rows_sparse = read_metrics(every.run_dir / "metrics.jsonl"), read_metrics(sparse.run_dir / "metrics.jsonl")
    assert [r["loss"] for r in rows] == [r["loss"] for r in rows_sparse]
    # Evaluated: epoch 2 (the interval) and 3 (the last); epoch 1 has losses and timings, no accuracy.
    assert [r["epoch"] for r in evaluated_rows(rows_sparse)] == [2, 3]
    assert not any(k.startswith(("student_", "val_student_", "assistant_", "val_assistant_")) for k in rows_sparse[0])
    for key in ("student_top1", "val_student_top1", "assistant_top1"):
        assert rows_sparse[2][key] == rows[2][key]
    assert sparse.last["student_top1"] == every.last["student_top1"]
    # best/ is chosen among the evaluated epochs, and the recorded best is one of their validation figures.
    state = torch.load(sparse.run_dir / "last" / "state.pt", weights_only=False)
    assert sparse.best_top1 == state["best"] == max(r["val_student_top1"] for r in rows_sparse[1:])
    assert state["best_epoch"] in (2, 3)


def test_readers_use_the_evaluated_epochs(make_spec, tmp_path):
    result = train(make_spec(train={"epochs": 3, "eval_every": 2}), quiet=True)
    run = read_run(result.run_dir)
    assert run["epochs"] == 3 and run["curve_epochs"] == [2, 3] and len(run["curve"]) == len(run["val_curve"]) == 2
    assert run["best_epoch"] in (2, 3)
    rows = read_metrics(result.run_dir / "metrics.jsonl")
    assert run["seconds"] == pytest.approx(sum(r["seconds"] for r in rows))  # the skipped epochs' time counts
    summary = summarise_run(result.run_dir)
    assert summary.epochs == 3 and summary.student_top1 == rows[-1]["student_top1"]
    assert plot_run(result.run_dir)  # the run's picture draws the evaluated epochs
    runs = [{"spec": "s", "variant": "tas", "seed": seed, **run} for seed in (0, 1)]
    runs.append({"spec": "s", "variant": "none", "seed": 0, **run, "curve": [1.0, 2.0, 3.0], "curve_epochs": [1, 2, 3]})
    assert plot_study(tmp_path, runs)


def test_a_run_stopped_by_epochs_is_evaluated_at_its_stop_and_resumes_under_another_interval(make_spec):
    spec = make_spec(train={"epochs": 4, "eval_every": 3})
    first = train(spec, quiet=True, max_epochs=2)
    assert first.epochs_done == 2 and "student_top1" in first.last  # the stop is evaluated
    resumed = train(make_spec(train={"epochs": 4, "eval_every": 1}), quiet=True, resume=True)
    assert resumed.finished
    rows = read_metrics(resumed.run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in evaluated_rows(rows)] == [2, 3, 4]
    assert RunFolder(resumed.run_dir).spec_changes(spec.spec) == []  # the interval is not a change of the run


def test_a_student_run_with_no_evaluated_epoch_yet_reads_as_unfinished(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text('{"epoch": 1, "loss": 2.0, "teacher_top1": 90.0, "seconds": 1.0}\n')
    assert read_run(folder) is None
    assert read_run(folder, role="teacher")["test_top1"] == 90.0  # a teacher fit's rows carry its own accuracy
