"""Every `tasgen ...` command shown in README.md and docs/ is exercised.

Commands in ```bash blocks run as written, in order, in a fresh working folder;
training and bench commands get `--set`/option overrides that shorten them (one
epoch, one step, a small batch) so the suite stays fast.

Commands in ```console blocks need what this machine lacks (several GPUs, CIFAR,
pretrained weights): their spec and `--set` overrides are validated, so a renamed
option, key or spec file still fails here. The distributed tests run the same
launch paths (`--nproc 2`, torchrun) on CPU. The compiled training command of
docs/benchmarks.md is the suite's one inductor compile.
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
SHORTEN = {
    "train": ["--set", "train.epochs=1", "--set", "train.teacher_epochs=1"],
    "bench": ["--steps", "1", "--warmup", "0", "--set", "data.batch_size=4"],
    "study": ["--seeds", "1", "--set", "train.epochs=1", "--set", "train.teacher_epochs=1"],
    "search": ["--epochs", "1", "--set", "train.teacher_epochs=1"],
}


def _last_command(line: str) -> list[str]:
    """The words of the last command of a shell line (a quoted ';' stays inside its word)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    words = list(lexer)
    return words[len(words) - words[::-1].index(";"):] if ";" in words else words


def _commands(doc: Path, kind: str) -> list[list[str]]:
    found = []
    text = re.sub(r"\\\n\s*", " ", doc.read_text())  # join continued lines
    for block in re.findall(rf"```{kind}\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip().removeprefix("$ ")
            words = _last_command(line)  # "rm -rf ...; tasgen plan ..." runs the tasgen part
            if "-m" in words and "tasgen_cli" in words:  # torchrun ... -m tasgen_cli train SPEC
                words = ["tasgen", *words[words.index("tasgen_cli", words.index("-m")) + 1:]]
            if words[:1] == ["tasgen"]:
                found.append([str(ROOT / w) if w.startswith("specs/") else w for w in words[1:]])
    return found


RUN = {d.name: c for d in DOCS if (c := _commands(d, "bash"))}
CHECK = {d.name: c for d in DOCS if (c := _commands(d, "console"))}


def test_readme_shows_commands() -> None:
    assert len(RUN["README.md"]) >= 10


@pytest.mark.parametrize("doc", list(RUN))
def test_documented_commands_run(doc: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # runs/ and written files land here
    runner = CliRunner()
    for args in RUN[doc]:
        result = runner.invoke(app, args + SHORTEN.get(args[0], []))
        assert result.exit_code == 0, f"{doc}: tasgen {' '.join(args)}\n{result.output}"


@pytest.mark.parametrize("doc", list(CHECK))
def test_shown_commands_name_valid_specs_and_options(doc: str) -> None:
    runner = CliRunner()
    for args in CHECK[doc]:
        spec = next((a for a in args[1:] if a.endswith(".yaml")), None)
        if args[0] == "schema" or spec is None:
            assert runner.invoke(app, [args[0], "--help"]).exit_code == 0, args
            continue
        sets = [a for i, a in enumerate(args) if i and args[i - 1] == "--set"]
        for arm in (a for i, a in enumerate(args) if i and args[i - 1] == "--arm"):  # a study arm's overrides
            sets += [kv for kv in arm.partition(":")[2].split(";") if kv]
        result = runner.invoke(app, ["validate", spec, *[x for s in sets for x in ("--set", s)]])
        assert result.exit_code == 0, f"{doc}: tasgen {' '.join(args)}\n{result.output}"
        assert runner.invoke(app, [args[0], "--help"]).exit_code == 0
