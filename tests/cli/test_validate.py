"""`tasgen validate` and `tasgen schema`: exit codes, located problems, no torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasgen_cli.app import app

WriteSpec = Callable[..., Path]
runner = CliRunner()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # problems then name files relative to it: spec.yaml:L:C


def _tasgen() -> list[str]:
    script = Path(sys.executable).with_name("tasgen")
    found = str(script) if script.exists() else shutil.which("tasgen")
    assert found, "the tasgen console script is not installed"
    return [found]


def test_valid_spec_prints_a_summary(write_spec: WriteSpec, minimal_spec: str) -> None:
    write_spec(minimal_spec)
    result = runner.invoke(app, ["validate", "spec.yaml"])
    assert result.exit_code == 0, result.output
    for word in ("demo", "resnet18 (timm)", "backbone", "tas", "digits"):
        assert word in result.stdout
    assert result.stderr == ""


def test_overrides_are_applied(write_spec: WriteSpec, minimal_spec: str) -> None:
    write_spec(minimal_spec)
    result = runner.invoke(
        app, ["validate", "spec.yaml", "--set", "name=other", "--set", "distill.method=kd"]
    )
    assert result.exit_code == 0, result.output
    assert "other" in result.stdout and "kd" in result.stdout


# Each kind of problem: ((old, new) text edit, overrides, expected stderr line prefixes);
# old None replaces the whole spec with new, unless new is None too.
CASES = {
    "yaml-syntax": (
        ("data: {", "data: ["),
        (),
        ["spec.yaml:8:55: invalid YAML: expected ',' or ']', but got '}'"],
    ),
    "not-a-mapping": ((None, "- demo\n- other\n"), (), ["spec.yaml:1:1: a spec must be a mapping"]),
    "python-tag": ((None, None), ("seed=!!python/name:os.system",), ["--set:1:6: seed: the tag "]),
    "unknown-key": (
        ("name: demo", "name: demo\ntrain: {epoch: 3}"),
        (),
        ["spec.yaml:2:9: train.epoch: unknown key 'epoch' (did you mean 'epochs'?)"],
    ),
    "wrong-type": (
        ("batch_size: 32", "batch_size: [32]"),
        (),
        ["spec.yaml:8:53: data.batch_size: input should be a valid integer"],
    ),
    "out-of-range": (
        ("depth: 1}", "depth: 99}"),
        (),
        [
            "spec.yaml:6:42: student.stages.0.depth: input should be less than or equal to 64 (got 99)"
        ],
    ),
    "missing-key": (
        ("  stem: {kind: conv, channels: 16, stride: 2}\n", ""),
        (),
        ["spec.yaml:3:1: student: missing required key 'stem'"],
    ),
    "missing-checkpoint": (
        ("{timm: resnet18}", "{timm: resnet18, checkpoint: w.pt}"),
        (),
        ["spec.yaml:2:39: teacher.checkpoint: checkpoint file not found: "],
    ),
    "missing-extends": (
        ("name: demo", "name: demo\nextends: base.yaml"),
        (),
        ["spec.yaml:2:10: extends: base spec not found: "],
    ),
    "unknown-timm": (
        ("{timm: resnet18}", "{timm: resnet1B}"),
        (),
        ["spec.yaml:2:17: teacher.timm: unknown timm model 'resnet1B' (close: resnet18"],
    ),
    "bad-set-path": (
        (None, None),
        ("train.epoch=3",),
        ["--set:1:1: train.epoch: unknown key 'epoch' (did you mean 'epochs'?)"],
    ),
    "malformed-set": (
        (None, None),
        ("train.epochs",),
        ["--set:1:1: malformed override 'train.epochs'"],
    ),
    "several": (
        ("{timm: resnet18}", "{timm: resnet1B}\ntrain: {epochs: 0}"),
        ("data.image_size=4",),
        [
            "spec.yaml:2:17: teacher.timm:",
            "spec.yaml:3:17: train.epochs:",
            "--set:1:17: data.image_size:",
        ],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_invalid_spec_exits_2_with_one_line_per_problem(
    write_spec: WriteSpec, minimal_spec: str, case: str
) -> None:
    (old, new), overrides, expected = CASES[case]
    if old is None:
        write_spec(minimal_spec if new is None else new)
    else:
        assert old in minimal_spec
        write_spec(minimal_spec.replace(old, new, 1))
    args = ["validate", "spec.yaml"] + [arg for o in overrides for arg in ("--set", o)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == len(expected), lines
    for line, prefix in zip(lines, expected, strict=True):
        assert line.startswith(prefix), line
    assert result.stdout == ""


def test_missing_spec_file() -> None:
    result = runner.invoke(app, ["validate", "nope.yaml"])
    assert result.exit_code == 2
    assert result.stderr == "nope.yaml:1:1: spec file not found\n"


def test_schema_to_stdout_and_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["title"] == "tasgen spec"
    result = runner.invoke(app, ["schema", "-o", "tasgen-spec.schema.json"])
    assert result.exit_code == 0
    assert json.loads((tmp_path / "tasgen-spec.schema.json").read_text()) == schema


# ------------------------------------------------------- the real console script
def test_console_script_valid_and_invalid(write_spec: WriteSpec, minimal_spec: str) -> None:
    write_spec(minimal_spec)
    ok = subprocess.run([*_tasgen(), "validate", "spec.yaml"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "demo" in ok.stdout

    write_spec(minimal_spec.replace("image_size: 32", "image_size: 4"), "bad.yaml")
    bad = subprocess.run(
        [*_tasgen(), "validate", "bad.yaml", "--set", "train.epoch=1", "--set", "oops"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stdout + bad.stderr
    assert bad.stderr.splitlines() == [
        "bad.yaml:8:37: data.image_size: input should be greater than or equal to 8 (got 4)",
        "--set:1:1: train.epoch: unknown key 'epoch' (did you mean 'epochs'?)",
        "--set:2:1: malformed override 'oops': expected KEY=VALUE, e.g. train.epochs=5",
    ]


def test_console_script_yaml_error(write_spec: WriteSpec) -> None:
    write_spec("teacher:\n  timm: [resnet18\n", "broken.yaml")
    result = subprocess.run([*_tasgen(), "validate", "broken.yaml"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("broken.yaml:3:1: invalid YAML: ")
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["-h"],
        ["--version"],
        ["validate", "-h"],
        ["validate", "spec.yaml"],
        ["validate", "spec.yaml", "--set", "seed=x"],
        ["schema"],
    ],
    ids=["help", "h", "version", "validate-h", "validate", "validate-invalid", "schema"],
)
def test_light_commands_do_not_import_torch(
    write_spec: WriteSpec, minimal_spec: str, argv: list[str]
) -> None:
    write_spec(minimal_spec)
    code = (
        "import sys\n"
        f"sys.argv = ['tasgen', *{argv!r}]\n"
        "from tasgen_cli.app import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "heavy = sorted(m for m in ('torch', 'timm') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('CODE', code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] in ("CODE 0", "CODE 2")


def test_a_missing_image_folder_is_located(write_spec: WriteSpec, minimal_spec: str, tmp_path: Path) -> None:
    write_spec(minimal_spec, "specs/base.yaml")
    write_spec("extends: base.yaml\ndata:\n  dataset: imagefolder\n  root: images\n", "specs/x.yaml")
    result = runner.invoke(app, ["validate", "specs/x.yaml"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    # Relative to the spec file, not to the working folder.
    assert result.stderr == f"specs/x.yaml:4:9: data.root: the image folder does not exist: {tmp_path / 'specs' / 'images'}\n"
    assert runner.invoke(app, ["validate", "specs/x.yaml", "--no-data"]).exit_code == 0  # written for another machine
    for split in ("train", "val"):  # validate reads the layout: both splits, each class folder with an image
        (tmp_path / "specs" / "images" / split / "cat").mkdir(parents=True)
        (tmp_path / "specs" / "images" / split / "cat" / "0.png").write_bytes(b"")
    found = runner.invoke(app, ["validate", "specs/x.yaml"])
    assert found.exit_code == 0, found.output


def test_version_and_short_help() -> None:
    from tasgen import __version__

    version = subprocess.run([*_tasgen(), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout == f"tasgen {__version__}\n"
    short, long = (subprocess.run([*_tasgen(), "plan", flag], capture_output=True, text=True) for flag in ("-h", "--help"))
    assert short.returncode == 0 and short.stdout == long.stdout and "--all" in short.stdout
