"""Every `tasgen ...` command shown in README.md and docs/ is exercised.

README.md runs as a user pastes it: every command of its ```bash and ```console
blocks, top to bottom, in one fresh folder holding a copy of specs/, so a command
that only works in another order fails here; the few that need what a test
machine lacks are skipped by name (`README_SKIPS`). In docs/, commands in ```bash
blocks run as written, in order, in a fresh working folder. Training and bench
commands get `--set`/option overrides that shorten them (one epoch, one step, a
small batch) so the suite stays fast.

Commands in ```console blocks need what this machine lacks (several GPUs, CIFAR,
pretrained weights): their spec and `--set` overrides are validated, so a renamed
option, key or spec file still fails here. The distributed tests run the same
launch paths (`--nproc 2`, torchrun) on CPU. The compiled training command of
docs/benchmarks.md is the suite's one inductor compile.
"""

from __future__ import annotations

import re
import shlex
import shutil
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


def _commands(doc: Path, kind: str, *, absolute: bool = True) -> list[list[str]]:
    """The tasgen commands of a doc's ```kind blocks (``bash|console`` for both), in order."""
    found = []
    text = re.sub(r"\\\n\s*", " ", doc.read_text())  # join continued lines
    for block in re.findall(rf"```(?:{kind})\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip().removeprefix("$ ")
            words = _last_command(line)  # "rm -rf ...; tasgen plan ..." runs the tasgen part
            if "-m" in words and "tasgen_cli" in words:  # torchrun ... -m tasgen_cli train SPEC
                words = ["tasgen", *words[words.index("tasgen_cli", words.index("-m")) + 1:]]
            if words[:1] == ["tasgen"]:
                found.append([str(ROOT / w) if absolute and w.startswith("specs/") else w for w in words[1:]])
    return found


README = ROOT / "README.md"
RUN = {d.name: c for d in DOCS if d != README and (c := _commands(d, "bash"))}
CHECK = {d.name: c for d in DOCS if (c := _commands(d, "console"))}
# README commands the in-order run leaves out: an option they carry, and why.
README_SKIPS = {
    "--push-to-hub": "needs network and a Hugging Face login",
    "--nproc": "needs CIFAR-100 (a download) and several GPUs; tests/distributed runs the launch path on CPU",
}


def _readme_skip(args: list[str]) -> str | None:
    return next((why for option, why in README_SKIPS.items() if option in args), None)


def test_readme_shows_commands() -> None:
    assert len(_commands(README, "bash")) >= 10


@pytest.mark.slow
def test_readme_runs_top_to_bottom_in_one_fresh_folder(tmp_path: Path, monkeypatch) -> None:
    shutil.copytree(ROOT / "specs", tmp_path / "specs")  # a clean clone's specs/, read by relative paths
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ran, skipped = 0, []
    for args in _commands(README, "bash|console", absolute=False):
        if why := _readme_skip(args):
            skipped.append(f"tasgen {' '.join(args)}: {why}")
            continue
        result = runner.invoke(app, args + SHORTEN.get(args[0], []))
        assert result.exit_code == 0, f"README.md, in order: tasgen {' '.join(args)}\n{result.output}"
        ran += 1
    assert ran >= 15 and len(skipped) == len(README_SKIPS), skipped  # a skip that matches nothing is stale


@pytest.mark.slow
@pytest.mark.parametrize("doc", list(RUN))
def test_documented_commands_run(doc: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # runs/ and written files land here
    runner = CliRunner()
    for args in RUN[doc]:
        result = runner.invoke(app, args + SHORTEN.get(args[0], []))
        assert result.exit_code == 0, f"{doc}: tasgen {' '.join(args)}\n{result.output}"


def _idx_tool_outputs(doc: Path) -> list[str]:
    """The OUT folders a doc's console blocks write with ``python tools/idx_to_folder.py SRC OUT``."""
    lines = (line.strip() for block in re.findall(r"```console\n(.*?)```", doc.read_text(), flags=re.S)
             for line in block.splitlines())
    return [line.split()[3] for line in lines if line.startswith("python tools/idx_to_folder.py")]


def _write_idx_tree(out: Path) -> None:
    """What tools/idx_to_folder.py writes at ``out``, made by the tool from tiny IDX files (the doc's source,
    a dataset's files, is not on a test machine)."""
    import numpy as np

    from tests.tools import idx_dataset, load_tool, write_idx_set

    source = out.parent / f"{out.name}-idx"
    for prefix in ("train", "t10k"):
        write_idx_set(source, prefix, *idx_dataset(np.random.default_rng(0), 20, 2), gz=False)
    assert load_tool("idx_to_folder").main([str(source), str(out), "--train-per-class", "5",
                                            "--test-per-class", "2"]) == 0


@pytest.mark.parametrize("doc", list(CHECK))
def test_shown_commands_name_valid_specs_and_options(doc: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative data roots resolve here; trees a doc's tool line writes are made here
    for out in _idx_tool_outputs(next(d for d in DOCS if d.name == doc)):
        _write_idx_tree(tmp_path / out)
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
