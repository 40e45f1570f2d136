"""`tasgen search`, the honest split (validation chooses, test reports) and the teacher's split record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open
from typer.testing import CliRunner

from tasgen.checkpoint import find_checkpoint, load_checkpoint
from tasgen.spec.load import load_spec
from tasgen.train import TrainError, train
from tasgen_cli.app import app
from tests.train.conftest import spec_dict, write_spec_file

pytestmark = pytest.mark.slow

TINY = {"data": {"num_samples": 120, "image_size": 16, "val_fraction": 0.2}, "train": {"epochs": 3}}


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_validation_chooses_best_and_test_is_reported(tmp_path: Path) -> None:
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="honest", distill={"method": "none"}, **TINY))
    result = train(load_spec(spec), quiet=True)
    rows = _rows(result.run_dir)
    assert all({"student_top1", "val_student_top1"} <= set(r) for r in rows)
    best_epoch = max(rows, key=lambda r: r["val_student_top1"])["epoch"]
    _, state = load_checkpoint(find_checkpoint(result.run_dir / "best"))
    assert state["epoch"] == best_epoch
    assert result.best_top1 == max(r["val_student_top1"] for r in rows)


def test_without_validation_best_follows_the_last_epoch(tmp_path: Path) -> None:
    over = {**TINY, "data": {**TINY["data"], "val_fraction": 0}}
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="noval", distill={"method": "none"}, **over))
    result = train(load_spec(spec), quiet=True)
    assert all("val_student_top1" not in r for r in _rows(result.run_dir))
    _, state = load_checkpoint(find_checkpoint(result.run_dir / "best"))
    assert state["epoch"] == 3


def test_teacher_records_its_split_and_another_split_is_refused(tmp_path: Path) -> None:
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="t", **TINY))
    teacher = train(load_spec(spec), role="teacher", quiet=True).run_dir.parent / "teacher.safetensors"
    with safe_open(str(teacher), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["role"] == "teacher" and meta["seed"] == "0" and len(meta["split_id"]) == 16
    assert 0 <= float(meta["teacher_top1"]) <= 100 and "val_teacher_top1" in meta

    # Another run seed on the same split reuses it; another split_seed is refused, with the fix.
    same = [f"teacher.checkpoint={teacher}", "name=s1", "seed=1", "train.epochs=1"]
    assert train(load_spec(spec, same), quiet=True).finished
    with pytest.raises(TrainError, match="fitted on another data split") as err:
        train(load_spec(spec, [*same, "name=s2", "data.split_seed=5"]), quiet=True)
    assert "data.split_seed" in str(err.value)


def test_search_ranks_candidates_on_validation_and_writes_a_fragment(tmp_path: Path) -> None:
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="searched", **TINY))
    out = tmp_path / "search"
    result = CliRunner().invoke(app, ["search", str(spec), "--top", "2", "--epochs", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "study.json").read_text())
    assert {r["variant"] for r in record["runs"]} == {r["variant"] for r in record["summary"]} and len(record["runs"]) == 2
    finals = {r["variant"]: r["val_curve"][-1] for r in record["runs"]}
    winner = max(finals, key=finals.get)
    fragment = yaml.safe_load((out / "best-split.yaml").read_text())
    assert f"split{fragment['assistant']['split']}-start{fragment['assistant']['global_start']}" == winner
    assert (out / "search.png").stat().st_size > 2000 and (out / "search.svg").is_file()
    assert "winner written to" in result.output and "planner score" in result.output
    # The fragment is usable with `extends:`.
    child = dict(spec_dict(tmp_path, name="child"), extends=str(out / "best-split.yaml"))
    loaded = load_spec(write_spec_file(tmp_path, child, "child.yaml"))
    assert loaded.spec.assistant.split == fragment["assistant"]["split"]


def test_search_needs_a_validation_split(tmp_path: Path) -> None:
    over = {**TINY, "data": {**TINY["data"], "val_fraction": 0}}
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="noval", **over))
    result = CliRunner().invoke(app, ["search", str(spec), "-o", str(tmp_path / "s")])
    assert result.exit_code == 2 and "data.val_fraction > 0" in result.output


def test_train_command_writes_its_curves(tmp_path: Path) -> None:
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="pictured", distill={"method": "none"}, **TINY))
    result = CliRunner().invoke(app, ["train", str(spec)])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "pictured"
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG" and (run_dir / "curves.svg").stat().st_size > 2000
    assert "best validation top-1" in result.output and "test top-1" in result.output
