"""The train / eval / export commands, on a local Typer app."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from tasgen_cli.train_cmds import register

from .conftest import spec_dict, write_spec_file


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def test_train_eval_export(tmp_path, teacher_weights):
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, teacher={"checkpoint": str(teacher_weights)}))
    runner = CliRunner()
    result = runner.invoke(_app(), ["train", str(spec), "--set", "train.epochs=2", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "stopped after epoch 1 of 2" in result.output
    assert "student run  step 1/" in result.output  # a pipe gets a line every train.log_interval updates
    result = runner.invoke(_app(), ["train", str(spec), "--resume"])
    assert result.exit_code == 0, result.output
    assert "finished" in result.output

    run = tmp_path / "runs" / "run"
    result = runner.invoke(_app(), ["eval", str(run)])
    assert result.exit_code == 0, result.output
    assert "student" in result.output and "assistant" in result.output and "teacher" in result.output

    out = tmp_path / "student.safetensors"
    result = runner.invoke(_app(), ["export", str(run), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_user_errors_exit_2_without_traceback(tmp_path, teacher_weights):
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, teacher={"checkpoint": str(teacher_weights)}))
    runner = CliRunner()
    for args in (["train", str(spec), "--resume"],                 # nothing to resume
                 ["train", str(spec), "--set", "train.epochs=0"],  # spec error
                 ["eval", str(tmp_path)]):                         # not a run folder
        result = runner.invoke(_app(), args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert result.output.strip().splitlines()[-1].startswith("error: ")
