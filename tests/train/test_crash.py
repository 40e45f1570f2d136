"""A short version of tests/crashtest.py: one SIGKILL inside a checkpoint save, resumed.

The full script (10 kills at random times, 4 inside saves, two writers on one folder,
a filling disk) is run by hand; see docs/reliability.md.
"""

from __future__ import annotations

import json

import pytest

from tests.crashtest import main


@pytest.mark.slow
def test_a_kill_inside_a_save_resumes_to_identical_weights_and_rows(tmp_path):
    out = tmp_path / "figures.json"
    code = main(["--random", "0", "--saves", "1", "--epochs", "3", "--seed", "1",
                 "--no-concurrent", "--no-disk", "--json", str(out), "--work", str(tmp_path / "work")])
    figures = json.loads(out.read_text())
    trial = figures["trials"][0]
    assert trial["killed"], trial
    assert trial["resume_exit"] == 0, trial.get("output")
    assert trial["identical"] and trial["best_identical"] and trial["best_is_best_epoch"], trial
    assert trial["rows_complete"] and trial["rows_equal"] and trial["rows_lost"] == 0 and trial["leftovers"] == []
    assert code == 0
