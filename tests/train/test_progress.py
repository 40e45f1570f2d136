"""The progress a run prints: a bar that fits an 80-column terminal, lines in a pipe."""

from __future__ import annotations

import io

from rich.console import Console

from tasgen.train.progress import RunProgress, short_names

STATS = {
    "loss": 19.4312, "ce": 2.5634, "teacher_student.feature": 3.4661, "teacher_student.logit": 1.2345,
    "teacher_assistant.feature": 3.1, "teacher_assistant.logit": 0.9876, "assistant_student.feature": 2.5,
    "lr": 1e-3, "img/s": 1234.0,
}


def test_short_names_are_the_initials_and_stay_apart() -> None:
    names = short_names(["ce", "teacher_student.feature", "teacher_assistant.logit", "ofa.final", "ofa.stage2"])
    assert names == {"ce": "ce", "teacher_student.feature": "ts.f", "teacher_assistant.logit": "ta.l",
                     "ofa.final": "ofa.f", "ofa.stage2": "ofa.s2"}
    # ts.f would stand for two terms: both keep their full names.
    assert short_names(["teacher_student.feature", "tea_stu.first"]) == {
        "teacher_student.feature": "teacher_student.feature", "tea_stu.first": "tea_stu.first"}


def test_the_bar_fits_80_columns_with_its_count_and_eta() -> None:
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None, record=True)
    report = RunProgress(console=console)
    report.start(1000, 0, "student quickstart")
    report.update(120, STATS)
    report.stop()
    text = console.export_text()
    # The recording holds every refresh, each written over the last; the final one is the bar as left.
    line = "student quickstart" + text.split("student quickstart")[-1].splitlines()[0]
    assert len(line) <= 80
    assert "120/1000" in line and "loss 19.43" in line and "ts.f 3.466" in line
    assert line.split()[-1].count(":") == 2  # the ETA (h:mm:ss) is on screen
    assert "…" not in text and "teacher_studen" not in line
    assert "ts.f = teacher_student.feature" in text  # the legend, once, above the bar


def test_a_pipe_gets_a_plain_line_per_log_interval() -> None:
    out = io.StringIO()
    report = RunProgress(console=Console(file=out, width=80, color_system=None))
    report.start(40, 0, "student quickstart")
    report.update(20, STATS)
    report.update(40, STATS)
    report.stop()
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[:2] for line in lines if "step" in line] == [
        ["student quickstart", "step 20/40"], ["student quickstart", "step 40/40"]]
    assert "teacher_student.feature 3.466" in lines[0] and "1234 img/s" in lines[0]  # full names, every value


def test_the_epoch_line_names_every_term() -> None:
    from tasgen.train.loop import _epoch_line

    row = {"epoch": 1, "loss": 19.43, "loss.ce": 2.56, "loss.teacher_student.feature": 3.4661, "student_top1": 50.0,
           "lr": 1e-3, "images_per_s": 100.0, "seconds": 3.0}
    line = _epoch_line(row, "student", 2)
    assert "ce 2.56" in line and "teacher_student.feature 3.466" in line


def test_a_long_run_name_leaves_the_count_and_eta_on_screen() -> None:
    console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None, record=True)
    report = RunProgress(console=console)
    report.start(1000, 0, "student " + "a-very-long-experiment-name-" * 3)
    report.update(120, STATS)
    report.stop()
    line = "student" + console.export_text().split("student")[-1].splitlines()[0]
    assert len(line) <= 80 and "120/1000" in line and line.split()[-1].count(":") == 2
