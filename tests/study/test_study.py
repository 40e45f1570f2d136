"""`tasgen study` / `tasgen compare STUDY_DIR`: layout, aggregate figures, one teacher per spec,
resume after a kill, pictures, and errors before any run starts."""

from __future__ import annotations

import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasgen.study import (
    StudyError,
    Variant,
    aggregate,
    arm_variant,
    method_variants,
    prepare_study,
    read_study,
    run_study,
)
from tasgen.study.table import read_run
from tasgen_cli.app import app
from tests.train.conftest import spec_dict, write_spec_file

pytestmark = pytest.mark.slow


def _specs(tmp_path: Path) -> list[Path]:
    tiny = {"data": {"num_samples": 80, "image_size": 16, "val_fraction": 0.2}, "train": {"epochs": 1}}
    a = write_spec_file(tmp_path, spec_dict(tmp_path, name="pair-a", **tiny), "a.yaml")
    b = write_spec_file(tmp_path, spec_dict(tmp_path, name="pair-b", seed=7, **tiny), "b.yaml")
    return [a, b]


# ----------------------------------------------------------------- aggregate
def test_aggregate_matches_hand_computed_figures() -> None:
    def run(variant: str, seed: int, top1: float, at_best: float) -> dict:
        return {"spec": "s", "variant": variant, "seed": seed, "test_top1": top1, "test_top1_at_best_val": at_best,
                "seconds": 10.0, "assistant_test_top1": math.nan, "teacher_test_top1": 90.0}

    rows = [run("none", 0, 80.0, 79.0), run("none", 1, 82.0, 81.0), run("none", 2, 84.0, 84.0),
            run("tas", 0, 85.0, 85.0), run("tas", 1, 88.0, 86.0), run("tas", 2, 85.0, 84.0),
            run("kd", 1, 83.0, 83.0)]
    summary = {r["variant"]: r for r in aggregate(rows)}
    none, tas, kd = summary["none"], summary["tas"], summary["kd"]
    assert none["n"] == 3 and none["mean"] == pytest.approx(82.0) and none["std"] == pytest.approx(2.0)
    assert (none["min"], none["max"]) == (80.0, 84.0)
    assert tas["mean"] == pytest.approx(86.0) and tas["std"] == pytest.approx(math.sqrt(3.0))
    assert tas["best_val_mean"] == pytest.approx(85.0) and tas["best_val_std"] == pytest.approx(1.0)
    # Paired over the same seeds: 5, 6, 1 -> mean 4, sample std sqrt(7).
    assert tas["diff_n"] == 3 and tas["diff_mean"] == pytest.approx(4.0) and tas["diff_std"] == pytest.approx(math.sqrt(7))
    # One seed: the difference uses only seed 1, and a single value has no std.
    assert kd["diff_n"] == 1 and kd["diff_mean"] == pytest.approx(1.0) and math.isnan(kd["diff_std"])
    assert math.isnan(none["diff_std"]) is False and none["diff_mean"] == 0.0
    assert tas["teacher"] == 90.0 and tas["seconds"] == 30.0


# ------------------------------------------------------- a whole small study
def test_study_two_specs_two_methods_two_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, teacher_store: Path
) -> None:
    import tasgen.train.run as run_module

    fits: list[str] = []
    real_fit = run_module._fit_teacher

    def counting_fit(loaded, *args, **kwargs):  # noqa: ANN001, ANN202
        fits.append(loaded.spec.name)
        return real_fit(loaded, *args, **kwargs)

    monkeypatch.setattr(run_module, "_fit_teacher", counting_fit)
    folder = tmp_path / "study"
    study = prepare_study(_specs(tmp_path), method_variants(["none", "kd"]), 2, folder)
    assert len(study.tasks) == 8
    events: list[str] = []
    record = run_study(study, progress=lambda event, info: events.append(event))

    assert sorted(fits) == ["pair-a", "pair-b"]  # one teacher per spec, shared by its 4 runs
    assert events.count("teacher") == 2 and events.count("run") == 8
    for name, seed in (("pair-a", 0), ("pair-b", 7)):
        teacher = record["teachers"][name]
        assert teacher["seed"] == seed and 0 <= teacher["test_top1"] <= 100
        assert Path(teacher["weights"]).is_file() and Path(teacher["weights"]).parent.parent == teacher_store
    # Every run is an ordinary run folder that used the shared teacher.
    for task in study.tasks:
        saved = (task.run_dir / "spec.yaml").read_text()
        assert f"seed: {task.seed}" in saved and f"method: {task.variant}" in saved
        if task.variant == "kd":
            assert record["teachers"][task.spec_name]["weights"] in saved
    assert not (folder / "pair-a" / "kd-seed0" / "teacher").exists()  # no second fit inside a run

    # The table against figures computed by hand from the run folders.
    for row in record["summary"]:
        finals = [json.loads((folder / row["spec"] / f"{row['variant']}-seed{s}" / "metrics.jsonl")
                             .read_text().splitlines()[-1])["student_top1"] for s in (0, 1)]
        assert row["n"] == 2 and row["mean"] == pytest.approx(statistics.fmean(finals))
        assert row["std"] == pytest.approx(statistics.stdev(finals))
        assert (row["min"], row["max"]) == (min(finals), max(finals))
    csv_lines = (folder / "study.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 8 and csv_lines[0].startswith("spec,variant,seed,epochs,test_top1")
    reread = read_study(folder)["summary"]
    assert json.dumps(reread).replace("NaN", "null") == json.dumps(record["summary"]).replace("NaN", "null")

    # `tasgen compare STUDY_DIR` prints the aggregate; the pictures exist and are not empty.
    from tasgen.study.figures import plot_study

    pictures = plot_study(folder, record["runs"], record["teachers"])
    assert {p.name for p in pictures} == {f"pair-{x}-{kind}.{fmt}" for x in "ab" for kind in ("top1", "curves")
                                          for fmt in ("png", "svg")}
    for picture in pictures:
        head = picture.read_bytes()[:8]
        assert picture.stat().st_size > 2000 and (head.startswith(b"\x89PNG") or b"<?xml" in head)
    result = CliRunner().invoke(app, ["compare", str(folder)])
    assert result.exit_code == 0, result.output
    for text in ("pair-a", "pair-b", "none", "kd", "vs none", "val-chosen"):
        assert text in result.output

    # A second call trains nothing: everything is finished.
    events.clear()
    run_study(prepare_study(_specs(tmp_path), method_variants(["none", "kd"]), 2, folder), progress=lambda e, i: events.append(e))
    assert events == ["skip"] * 8 and sorted(fits) == ["pair-a", "pair-b"]


def test_study_resumes_after_a_kill(tmp_path: Path) -> None:
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="killed", data={"num_samples": 240, "image_size": 16},
                                               train={"epochs": 3}), "k.yaml")
    folder = tmp_path / "study"
    cmd = [sys.executable, "-m", "tasgen_cli", "study", str(spec), "--methods", "none,tas", "--seeds", "2", "-o", str(folder)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # Kill it once the first run has finished and the second has a checkpoint, or after 120 s.
    deadline = time.monotonic() + 120
    second = folder / "killed" / "none-seed1" / "last"
    while time.monotonic() < deadline and proc.poll() is None and not second.exists():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (folder / "killed" / "none-seed0" / "metrics.jsonl").is_file()

    study = prepare_study([spec], method_variants(["none", "tas"]), 2, folder)
    events: list[str] = []
    record = run_study(study, progress=lambda event, info: events.append(event))
    assert events.count("skip") >= 1
    assert [(r["variant"], r["seed"], r["epochs"]) for r in record["runs"]] == [
        ("none", 0, 3), ("none", 1, 3), ("tas", 0, 3), ("tas", 1, 3)
    ]
    for task in study.tasks:
        rows = [json.loads(line) for line in (task.run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2, 3]  # complete and unique after the resume
        assert read_run(task.run_dir)["epochs"] == 3


# -------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "none,fitnat"], "unknown method 'fitnat': choose from tas, ofa, kd, fitnet, crd, dkd, dist, "
                                       "none; did you mean 'fitnet'?"),
        (["--methods", "tas,tas"], "distinct names"),
        (["--seeds", "0"], "--seeds must be at least 1"),
    ],
)
def test_bad_study_arguments_stop_before_any_run(tmp_path: Path, args: list[str], message: str) -> None:
    spec = _specs(tmp_path)[0]
    result = CliRunner().invoke(app, ["study", str(spec), "-o", str(tmp_path / "s"), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_arm_is_parsed_into_a_named_variant() -> None:
    arm = arm_variant("tas-head:distill.method=tas; distill.feature.pool=head")
    assert arm == Variant("tas-head", ("distill.method=tas", "distill.feature.pool=head"))
    assert arm_variant("k.2:train.epochs=[1, 2]").overrides == ("train.epochs=[1, 2]",)  # commas stay in a value


@pytest.mark.parametrize(
    "args, message",
    [
        (["--arm", "distill.method=tas"], "write NAME:KEY=VALUE"),
        (["--arm", "a/b:distill.method=tas"], "write NAME:KEY=VALUE"),
        (["--arm", "x:distill.method"], "each override is KEY=VALUE, got 'distill.method'"),
        (["--arm", "x:"], "each override is KEY=VALUE, got none"),
        (["--arm", "none:distill.method=tas"], "two arms are named 'none'"),
        (["--arm", "x:distill.feature.pool=max"], "distill.feature.pool"),
    ],
)
def test_bad_arms_stop_before_any_run(tmp_path: Path, args: list[str], message: str) -> None:
    spec = _specs(tmp_path)[0]
    result = CliRunner().invoke(app, ["study", str(spec), "--methods", "none", "-o", str(tmp_path / "s"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_an_arm_runs_beside_the_methods_and_is_paired_with_none(tmp_path: Path) -> None:
    spec = _specs(tmp_path)[0]
    folder = tmp_path / "s"
    result = CliRunner().invoke(app, ["study", str(spec), "--methods", "none", "--seeds", "1", "-o", str(folder),
                                      "--arm", "tas-head:distill.method=tas;distill.feature.pool=head"])
    assert result.exit_code == 0, result.output
    saved = (folder / "pair-a" / "tas-head-seed0" / "spec.yaml").read_text()
    assert "method: tas" in saved and "pool: head" in saved
    summary = {row["variant"]: row for row in read_study(folder)["summary"]}
    assert set(summary) == {"none", "tas-head"} and summary["tas-head"]["diff_n"] == 1
    final = json.loads((folder / "pair-a" / "tas-head-seed0" / "metrics.jsonl").read_text().splitlines()[-1])
    assert summary["tas-head"]["mean"] == pytest.approx(final["student_top1"])
    assert any(line.strip().startswith("pair-a") and "tas-head" in line for line in result.output.splitlines())

    # The same table as Markdown, for a results page: a header, a rule, one row per arm.
    markdown = CliRunner().invoke(app, ["compare", str(folder), "--markdown"])
    assert markdown.exit_code == 0, markdown.output
    lines = markdown.output.splitlines()
    assert lines[0].startswith("| spec | method | n | top-1 |") and lines[1].startswith("| --- |")
    arm_row = next(line for line in lines if line.startswith("| pair-a | tas-head |"))
    assert f"| {summary['tas-head']['mean']:.2f} |" in arm_row
    refused = CliRunner().invoke(app, ["compare", str(folder / "pair-a" / "none-seed0"), "--markdown"])
    assert refused.exit_code == 2 and "study folder" in refused.output


def test_one_bad_spec_stops_the_study_and_keeps_finished_runs(tmp_path: Path) -> None:
    good = _specs(tmp_path)[0]
    bad = write_spec_file(tmp_path, spec_dict(tmp_path, name="bad", train={"epochs": "many"}), "bad.yaml")
    folder = tmp_path / "s"
    finished = folder / "pair-a" / "none-seed0"
    finished.mkdir(parents=True)
    (finished / "metrics.jsonl").write_text('{"epoch": 1, "student_top1": 50.0}\n')
    result = CliRunner().invoke(app, ["study", str(good), str(bad), "-o", str(folder), "--methods", "none"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "bad.yaml:" in result.output and "train.epochs" in result.output
    assert (finished / "metrics.jsonl").read_text() == '{"epoch": 1, "student_top1": 50.0}\n'


def test_two_specs_with_one_name_are_refused(tmp_path: Path) -> None:
    a = write_spec_file(tmp_path, spec_dict(tmp_path, name="same"), "a.yaml")
    b = write_spec_file(tmp_path, spec_dict(tmp_path, name="same"), "b.yaml")
    with pytest.raises(StudyError, match="both name their run 'same'"):
        prepare_study([a, b], method_variants(["none"]), 1, tmp_path / "s")


def test_compare_of_a_folder_without_study_json(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    result = CliRunner().invoke(app, ["compare", str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_one_seed_study_prints_its_table(tmp_path: Path) -> None:
    # One seed: no standard deviation anywhere; the table says "-" or the mean alone.
    spec = _specs(tmp_path)[0]
    result = CliRunner().invoke(app, ["study", str(spec), "--methods", "none,kd", "--seeds", "1", "-o", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.strip().startswith("pair-a")]
    assert len(rows) == 2 and all("±" not in row and "nan" not in row for row in rows)
    assert "wrote" in result.output and (tmp_path / "s" / "pair-a-top1.png").is_file()


def test_jobs_run_in_separate_processes(tmp_path: Path) -> None:
    spec = _specs(tmp_path)[0]
    result = CliRunner().invoke(app, ["study", str(spec), "--methods", "none", "--seeds", "2", "--jobs", "2",
                                      "-o", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "[2/2]" in result.output and "pair-a" in result.output
    record = read_study(tmp_path / "s")
    assert [(r["variant"], r["seed"]) for r in record["runs"]] == [("none", 0), ("none", 1)]
    assert record["teachers"]["pair-a"]["test_top1"] is not None
