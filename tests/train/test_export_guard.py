"""`tasgen export` never writes over a file of a run folder: its own, another run's, through
`..`, a symlink or a hard link; a new file beside a run's files is fine."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from tasgen.train import train
from tasgen_cli.app import app


@pytest.fixture
def two_runs(make_spec):
    return train(make_spec(name="a", train={"epochs": 1}), quiet=True).run_dir, \
        train(make_spec("b.yaml", name="b", train={"epochs": 1}), quiet=True).run_dir


def test_export_refuses_the_files_of_run_folders(two_runs, tmp_path):
    run, other = two_runs
    files = {p: p.read_bytes() for p in [*run.rglob("*"), *other.rglob("*")] if p.is_file()}
    (tmp_path / "alias").symlink_to(run)
    (tmp_path / "link.safetensors").symlink_to(run / "best" / "model.safetensors")
    os.link(run / "last" / "model.safetensors", tmp_path / "hard.safetensors")
    refused = [
        ["-o", str(run / "best" / "model.safetensors")],              # the run's own best weights
        ["-o", str(run)],                                            # the run folder itself
        ["-o", str(run / "best" / "extra.safetensors")],              # into a checkpoint folder
        ["-o", str(other / "metrics.jsonl")],                        # another run's file
        ["-o", str(run / ".." / "b" / "spec.yaml")],                 # through ..
        ["-o", str(tmp_path / "alias" / "last" / "model.safetensors")],  # through a symlinked folder
        ["-o", str(tmp_path / "link.safetensors")],                  # a symlink to a run's file
        ["-o", str(tmp_path / "hard.safetensors")],                  # a hard link to one
        ["-o", str(run / "best"), "--format", "timm"],               # a timm folder over a checkpoint
        ["-o", str(run / "last" / "model.safetensors"), "--format", "onnx"],
    ]
    for args in refused:
        result = CliRunner().invoke(app, ["export", str(run), *args])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output and "refusing to write" in result.output, result.output
        assert "outside the run folders" in result.output
    for args in refused[:2]:  # --overwrite replaces other files, never a run's
        result = CliRunner().invoke(app, ["export", str(run), *args, "--overwrite"])
        assert result.exit_code == 2 and "refusing to write" in result.output, (args, result.output)
    assert {p: p.read_bytes() for p in files} == files
    assert CliRunner().invoke(app, ["eval", str(run)]).exit_code == 0  # its integrity check still holds

    beside = run / "student.safetensors"  # a new file beside the run's own is not one of them
    result = CliRunner().invoke(app, ["export", str(run), "-o", str(beside)])
    assert result.exit_code == 0, result.output
    assert beside.is_file()


def test_a_lock_file_alone_is_no_run_folder(tmp_path):
    """Other tools name their locks `.lock` too (pytest's numbered folders): a run's goes with its files."""
    from tasgen.study.table import STUDY_FILE
    from tasgen.train.run_folder import STUDY_FILE as STUDY_MARKER
    from tasgen.train.run_folder import _is_run_folder

    assert STUDY_MARKER == STUDY_FILE  # run_folder names the study marker without importing the study layer
    (tmp_path / ".lock").write_text("123\n")
    assert not _is_run_folder(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    assert _is_run_folder(tmp_path)
