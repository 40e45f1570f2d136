"""`tasgen compare` refuses folders that are not runs."""

from __future__ import annotations

from typer.testing import CliRunner

from tasgen_cli.app import app


def test_compare_refuses_a_folder_that_is_not_a_run(tmp_path) -> None:
    result = CliRunner().invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a tasgen run folder" in result.output and "Traceback" not in result.output
