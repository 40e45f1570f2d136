"""Every `tasgen ...` command shown in README.md and docs/ runs as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasgen_cli.app import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.splitlines():
                line = line.split("#", 1)[0].strip()
                line = line.split(";")[-1].strip()  # "rm -rf ...; tasgen plan ..." runs the tasgen part
                if line.startswith("tasgen "):
                    found.append((doc.name, line))
    return found


COMMANDS = _commands()


def test_docs_show_commands() -> None:
    assert len(COMMANDS) >= 6


@pytest.mark.parametrize(("doc", "command"), COMMANDS, ids=[f"{d}: {c}" for d, c in COMMANDS])
def test_documented_command_runs(doc: str, command: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    args = shlex.split(command)[1:]
    # Files the command writes go to a temporary folder, not into the checkout.
    for flag in ("-o", "--output"):
        if flag in args:
            i = args.index(flag) + 1
            args[i] = str(tmp_path / Path(args[i]).name)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, f"{doc}: {command}\n{result.output}"
