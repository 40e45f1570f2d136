"""A study reuses only runs trained with the spec it would train now; a torn metrics row and
Ctrl-C are answered with a sentence that says how to go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tasgen_cli.app import app
from tests.train.conftest import spec_dict, write_spec_file

pytestmark = pytest.mark.slow


def _study(tmp_path: Path, *extra: str) -> tuple[Path, list[str]]:
    """A one-run study (tiny spec, method none, one seed): the folder and the command line."""
    tiny = {"data": {"num_samples": 80, "image_size": 16, "val_fraction": 0.2}, "train": {"epochs": 1}}
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="pair", **tiny), "pair.yaml")
    folder = tmp_path / "s"
    return folder, ["study", str(spec), "--methods", "none", "--seeds", "1", "-o", str(folder), *extra]


def test_a_study_rerun_with_other_settings_is_refused(tmp_path: Path) -> None:
    folder, args = _study(tmp_path)
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    run = folder / "pair" / "none-seed0"
    kept = {p: p.read_bytes() for p in [*folder.rglob("*.jsonl"), *folder.rglob("spec.yaml"), folder / "study.json"]}

    for change, words in (("train.optimizer.lr=0.01", "train.optimizer.lr (0.05 -> 0.01)"),
                          ("train.epochs=2", "train.epochs (1 -> 2)")):
        again = CliRunner().invoke(app, [*args, "--set", change])
        assert again.exit_code == 2, again.output
        assert "Traceback" not in again.output and "finished earlier" not in again.output
        assert f"{run}: {words}" in again.output and "another folder (-o)" in again.output
        assert "study.json records no --set" in again.output
        assert {p: p.read_bytes() for p in kept} == kept  # nothing trained, nothing rewritten
    assert yaml.safe_load((run / "spec.yaml").read_text())["train"]["optimizer"]["lr"] == 0.05

    # The same settings (or a key no result depends on) reuse the run.
    for extra in ([], ["--set", "train.log_interval=5"]):
        same = CliRunner().invoke(app, [*args, *extra])
        assert same.exit_code == 0 and "finished earlier" in same.output, same.output


def test_a_study_reads_a_torn_metrics_row_and_its_resume_repairs_it(tmp_path: Path) -> None:
    folder, args = _study(tmp_path)
    assert CliRunner().invoke(app, args).exit_code == 0
    metrics = folder / "pair" / "none-seed0" / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole[: len(whole) // 2])  # the only row, cut short
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"warning: {metrics}:1: the last metrics row is torn" in again.output
    assert metrics.read_text() == whole and json.loads(whole)["epoch"] == 1


def test_ctrl_c_in_a_study_says_to_rerun_the_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tasgen.study

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(tasgen.study, "run_study", interrupted)
    _, args = _study(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert "re-run the same command" in result.output and "tasgen train" not in result.output
