"""A run's metrics.jsonl read by one reader: a torn last row is dropped with a warning,
a damaged earlier row is refused with its file and line (compare, study, pictures, resume)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tasgen.run_metrics import MetricsError, MetricsWarning, read_metrics
from tasgen.study.table import read_run
from tasgen.train import train
from tasgen.train.run_folder import RunFolder
from tasgen_cli.app import app


def _tear(path, keep: int) -> None:
    """Cut the file ``keep`` bytes into its last line, as a copy cut short would."""
    text = path.read_text()
    start = text.rstrip("\n").rfind("\n") + 1
    path.write_text(text[: start + keep])


def test_a_torn_last_row_is_dropped_with_a_warning_and_a_damaged_row_refused(tmp_path):
    file = tmp_path / "metrics.jsonl"
    rows = [{"epoch": e, "student_top1": 10.0 * e} for e in (1, 2, 3)]
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    _tear(file, 9)
    with pytest.warns(MetricsWarning, match=rf"{file}:3: the last metrics row is torn"):
        assert read_metrics(file) == rows[:2]
    with pytest.raises(MetricsError, match=rf"{file}:3: not a JSON metrics row"):
        read_metrics(file, strict=True)
    whole = "".join(json.dumps(r) + "\n" for r in rows[:2]).encode()
    file.write_bytes(whole + b'{"epoch": 3, "\xe2\x82')  # cut inside a character: still a torn row
    with pytest.warns(MetricsWarning, match=rf"{file}:3: the last metrics row is torn"):
        assert read_metrics(file) == rows[:2]
    file.write_text(json.dumps(rows[0]) + '\n{"epoch": 2, "stud\n' + json.dumps(rows[2]) + "\n")
    with pytest.raises(MetricsError, match=rf"{file}:2: not a JSON metrics row"):
        read_metrics(file)


def test_compare_and_study_read_a_torn_run_and_resume_repairs_it(make_spec):
    spec = make_spec(name="cut")
    result = train(spec, quiet=True)
    folder = RunFolder(result.run_dir)
    whole = folder.metrics_jsonl.read_text()
    _tear(folder.metrics_jsonl, 20)

    out = CliRunner().invoke(app, ["compare", str(folder.path)])
    assert out.exit_code == 0, out.output
    assert "Traceback" not in out.output and "the last metrics row is torn" in out.output
    with pytest.warns(MetricsWarning):
        assert read_run(folder.path)["epochs"] == 1

    train(spec, resume=True, quiet=True)  # the run's own last/ holds every row
    assert folder.metrics_jsonl.read_text() == whole

    lines = whole.splitlines(keepends=True)
    folder.metrics_jsonl.write_text("{not json\n" + "".join(lines[1:]))
    out = CliRunner().invoke(app, ["compare", str(folder.path)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert f"{folder.metrics_jsonl}:1: not a JSON metrics row" in out.output
