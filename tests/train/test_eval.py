"""`tasgen eval`: both splits by default, one with --split, other data with --data / --set data.*."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasgen.train import evaluate, train
from tasgen_cli.app import app

from .conftest import spec_dict, write_spec_file

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, teacher_weights: Path) -> Path:
    from tasgen.spec.load import load_spec

    tmp = tmp_path_factory.mktemp("eval")
    spec = write_spec_file(tmp, spec_dict(tmp, teacher={"checkpoint": str(teacher_weights)}, train={"epochs": 1}))
    return train(load_spec(spec), quiet=True).run_dir


def _eval(*args: str) -> str:
    result = runner.invoke(app, ["eval", *args], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_eval_prints_the_test_and_validation_splits(run: Path) -> None:
    scores = evaluate(run)
    assert scores["images"] == 13 and scores["val_images"] == 5  # 64 synthetic images: 20 % test, 10 % of the rest
    both = _eval(str(run))
    assert "13 test images, 5 validation images" in both and "validation top-1 %" in both
    student = next(line for line in both.splitlines() if "student" in line)
    for key in ("student_top1", "student_top5", "val_student_top1", "val_student_top5"):
        assert f"{scores[key]:.2f}" in student
    test = _eval(str(run), "--split", "test")
    assert "test top-1 %" in test and "validation" not in test
    val = _eval(str(run), "--split", "val")
    assert "validation top-1 %" in val and "test top-1" not in val and "5 validation images" in val


def test_eval_on_other_data(run: Path, tmp_path: Path) -> None:
    other = _eval(str(run), "--set", "data.num_samples=200", "--split", "test")
    assert "40 test images" in other  # the run's models on 200 other synthetic images
    (tmp_path / "more").mkdir()
    data_file = tmp_path / "more" / "data.yaml"
    data_file.write_text("data: {num_samples: 100, val_fraction: 0}\n")
    result = _eval(str(run), "--data", str(data_file))
    assert "20 test images" in result and "validation top-1" not in result and "test split only" in result
    assert evaluate(run, split="test", data=None)["images"] == 13  # the run's own data is unchanged


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "train.epochs=3"], "--set:1:1: train.epochs: evaluation takes data.* overrides only"),
    (["--set", "data.num_sample=3"], "--set:1:1: data.num_sample: unknown key 'num_sample'"),
    (["--set", "data.val_fraction=0", "--split", "val"], "has no validation split here"),
    (["--data", "DATA"], "data.yaml:1:1: data: the evaluation data file needs a data: mapping"),
])
def test_eval_errors_are_located(run: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "data.yaml").write_text("teacher: {timm: resnet18}\n")
    args = [str(tmp_path / "data.yaml") if a == "DATA" else a for a in args]
    result = runner.invoke(app, ["eval", str(run), *args])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message in result.output, result.output
