"""Every `tasgen ...` command shown in README.md and docs/ runs as written, in order.

Training commands get `--set` overrides that shorten the schedule (1 epoch) so the
suite stays fast; everything else about them runs as documented.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasgen_cli.app import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHORT = ["--set", "train.epochs=1", "--set", "train.teacher_epochs=1"]


def _commands(doc: Path) -> list[str]:
    found = []
    for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            line = line.split(";")[-1].strip()  # "rm -rf ...; tasgen plan ..." runs the tasgen part
            if line.startswith("tasgen "):
                found.append(line)
    return found


DOC_COMMANDS = {doc.name: _commands(doc) for doc in DOCS if _commands(doc)}


def test_readme_shows_commands() -> None:
    assert len(DOC_COMMANDS["README.md"]) >= 10


@pytest.mark.parametrize("doc", list(DOC_COMMANDS))
def test_documented_commands_run(doc: str, tmp_path: Path, monkeypatch) -> None:
    # A fresh folder as the working directory: runs/ and written files land there.
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    for command in DOC_COMMANDS[doc]:
        args = [str(ROOT / a) if a.startswith("specs/") else a for a in shlex.split(command)[1:]]
        if args[0] == "train":
            args += SHORT
        result = runner.invoke(app, args)
        assert result.exit_code == 0, f"{doc}: {command}\n{result.output}"
