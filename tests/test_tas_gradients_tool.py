"""tools/tas_gradients.py: each term's gradient against CE, on the stages the assistant borrows and the rest."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tools import load_tool

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    return load_tool("tas_gradients")


def test_rows_split_the_student_and_the_summary_reads_them(tmp_path: Path, capsys) -> None:
    tool = _tool()
    out = tmp_path / "rows.json"
    assert tool.main([str(ROOT / "specs" / "study" / "cnn-to-mlp.yaml"), "--untrained-teacher", "--steps", "2",
                      "--every", "1", "--json", str(out), "--set", "data.batch_size=8"]) == 0
    rows = json.loads(out.read_text())
    assert [r["step"] for r in rows] == [0, 1]
    row = rows[0]
    # The student is the global member here: the assistant borrows its last stage and head (shared), and only
    # the teacher -> assistant pair reaches them besides the student's own terms.
    assert row["shared"]["numel"] > 0 and row["own"]["numel"] > 0
    assert "teacher_assistant.feature" in row["shared"] and "teacher_assistant.feature" in row["own"]
    assert row["own"]["teacher_assistant.feature"]["rel_norm"] == 0  # no gradient outside the borrowed stages
    for group in ("shared", "own"):
        for term, v in row[group].items():
            if isinstance(v, dict) and v["rel_norm"] > 0:
                assert -1.0001 <= v["cos_ce"] <= 1.0001, term
    assert abs(row["shared"]["teacher_student.logit"]["cos_ce"]) <= 1.0001
    assert 0 <= row["same_class_negatives"] <= 1
    capsys.readouterr()
    assert tool.main(["x", "--summary", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "first half" in printed and "teacher_assistant.feature" in printed
