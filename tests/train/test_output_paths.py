"""One policy for every command that writes a file or a folder (`tasgen.output`), tried on each command.

Each command is pointed at a read-only place, an existing folder, an existing file and
a path whose folders do not exist yet: it must answer with one sentence and exit 2
(never a traceback), replace a file only with --overwrite, and create missing folders
saying so.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasgen.train import train
from tasgen_cli.app import app

from .conftest import spec_dict, write_spec_file

VIT = {"timm": "vit_tiny_patch16_224",
       "kwargs": {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}}
runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, teacher_weights) -> tuple[Path, Path]:
    """(a spec with a given teacher and a small timm student, its one-epoch run folder)."""
    from tasgen.spec.load import load_spec

    tmp = tmp_path_factory.mktemp("outputs")
    data = spec_dict(tmp, teacher={"checkpoint": str(teacher_weights)}, student=VIT, distill={"method": "kd"},
                     train={"epochs": 1})
    spec = write_spec_file(tmp, data)
    return spec, train(load_spec(spec), quiet=True).run_dir


@pytest.fixture
def read_only(tmp_path: Path) -> Path:
    """A folder this process cannot write in (root writes through permissions: /sys refuses it)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys/fs")
    try:
        (folder / "tasgen-probe").write_text("")
    except OSError:
        return folder
    pytest.skip("no read-only place for root here")


# Each command with its output path; "folder" outputs are written as folders.
Command = Callable[[Path, Path, Path], list[str]]
COMMANDS: dict[str, tuple[str, Command]] = {
    "schema": ("file", lambda spec, run, out: ["schema", "-o", str(out)]),
    "emit": ("file", lambda spec, run, out: ["emit", str(spec), "-o", str(out)]),
    "plan-svg": ("file", lambda spec, run, out: ["plan", str(spec), "--format", "svg", "-o", str(out)]),
    "export": ("file", lambda spec, run, out: ["export", str(run), "-o", str(out)]),
    "export-onnx": ("file", lambda spec, run, out: ["export", str(run), "--format", "onnx", "-o", str(out)]),
    "export-timm": ("folder", lambda spec, run, out: ["export", str(run), "--format", "timm", "-o", str(out)]),
    "study": ("study", lambda spec, run, out: ["study", str(spec), "--methods", "none", "--seeds", "1",
                                               "-o", str(out)]),
}
NEEDS = {"export-onnx": "onnx"}


def _invoke(name: str, setup: tuple[Path, Path], out: Path, *extra: str):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{NEEDS[name]} is an optional extra")
    spec, run = setup
    result = runner.invoke(app, [*COMMANDS[name][1](spec, run, out), *extra])
    assert "Traceback" not in result.output and not isinstance(result.exception, (OSError, AssertionError))
    return result


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_read_only_place_is_one_sentence(name, setup, read_only) -> None:
    result = _invoke(name, setup, read_only / "out")
    assert result.exit_code == 2, result.output
    assert f"cannot write {read_only / 'out'}" in result.stderr and "read-only or not yours" in result.stderr


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_existing_folder(name, setup, tmp_path) -> None:
    kind = COMMANDS[name][0]
    out = tmp_path / "there"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    if kind == "study":
        pytest.skip("an existing study folder is continued (tests/study)")
    result = _invoke(name, setup, out)
    assert result.exit_code == 2, result.output
    if kind == "file":
        assert f"{out} is a folder; give the path of the file to write" in result.stderr
    else:  # a folder that holds files is written into only with --overwrite, which keeps the others
        assert f"{out} exists and holds files; --overwrite" in result.stderr
        result = _invoke(name, setup, out, "--overwrite")
        assert result.exit_code == 0, result.output
        assert (out / "keep.txt").read_text() == "mine" and (out / "model.safetensors").is_file()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_existing_file(name, setup, tmp_path) -> None:
    kind = COMMANDS[name][0]
    out = tmp_path / "there.out"
    out.write_text("mine")
    result = _invoke(name, setup, out)
    assert result.exit_code == 2, result.output
    if kind != "file":
        assert f"{out} is a file, and this output is a folder" in result.stderr
        return
    assert f"{out} exists; --overwrite replaces it" in result.stderr and out.read_text() == "mine"
    result = _invoke(name, setup, out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() != b"mine" and [p.name for p in tmp_path.iterdir()] == ["there.out"]  # no temporary left


@pytest.mark.parametrize("name", list(COMMANDS))
def test_missing_folders_are_created_and_said(name, setup, tmp_path) -> None:
    out = tmp_path / "new" / "deeper" / "out"
    result = _invoke(name, setup, out)
    assert result.exit_code == 0, result.output
    assert f"created folder {tmp_path / 'new'}" in result.stderr
    assert f"created folder {tmp_path / 'new' / 'deeper'}" in result.stderr
    assert out.exists()
