"""Tables are printed whole: a number is never cut to "…", in a pipe or a narrow terminal."""

from __future__ import annotations

import io
import re

from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from tasgen.study.table import write_study
from tasgen_cli._render import print_table
from tasgen_cli.app import app

SPEC = "vit_small_patch16_224-to-resnet18-on-cifar100-long"


def _runs() -> list[dict]:
    runs = []
    for variant, base in (("none", 87.0), ("tas", 89.0)):
        for seed in range(3):
            top1 = base + 1.1234 * seed
            runs.append({
                "spec": SPEC, "variant": variant, "seed": seed, "epochs": 2, "test_top1": top1,
                "test_top1_at_best_val": top1 - 0.5, "best_val_top1": top1, "best_epoch": 2,
                "assistant_test_top1": 80.0 + seed, "teacher_test_top1": 95.25, "seconds": 1331.0,
                "run_dir": f"runs/study/{SPEC}/{variant}/seed{seed}",
            })
    return runs


def _table() -> Table:
    table = Table(title="a wide table")
    for column in ("name", "mean ± std", "range", "minutes", "teacher"):
        table.add_column(column, no_wrap=True)
    table.add_row(SPEC, "89.42 ± 2.31", "86.10-91.20", "22.18", "95.25")
    return table


def test_compare_of_a_study_in_a_pipe_keeps_every_number(tmp_path) -> None:
    write_study(tmp_path, {}, {}, _runs())
    result = CliRunner().invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    # tas: mean 90.12 ± 1.12 over seeds 0-2, range 89.00-91.25, 66.5 training minutes.
    row = next(line for line in result.output.splitlines() if " tas " in line)
    for number in ("90.12 ± 1.12", "89.00-91.25", "66.5", "95.25"):
        assert number in row


def test_a_pipe_gets_full_rows() -> None:
    out = io.StringIO()
    print_table(_table(), Console(file=out, width=50, color_system=None))
    text = out.getvalue()
    assert "…" not in text
    assert re.search(rf"{SPEC}.*89\.42 ± 2\.31.*86\.10-91\.20.*22\.18.*95\.25", text)


def test_a_narrow_terminal_leaves_columns_out_with_a_note() -> None:
    out = io.StringIO()
    print_table(_table(), Console(file=out, width=80, force_terminal=True, color_system=None))
    text = out.getvalue()
    assert "…" not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    assert SPEC in text and "89.42 ± 2.31" in text
    note = text[text.index("(left out for width:"):]
    for header, cell in (("range", "86.10-91.20"), ("minutes", "22.18"), ("teacher", "95.25")):
        assert (cell in text) != (header in note), header  # shown whole, or named as left out
    assert "103 columns" in note
