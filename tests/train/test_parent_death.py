"""A killed parent leaves no process behind: a study's --jobs workers, torchrun and its trainers stop with it.

Each test starts the real command, waits until its children train, SIGKILLs the
parent (no handler runs: only the children's death signal can stop them), checks that
every descendant is gone within seconds, and that the next run of the same command
proceeds (no "in use": the run folders' locks died with their holders).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import spec_dict, write_spec_file

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the death signal is Linux's prctl")
ROOT = Path(__file__).resolve().parents[2]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a live process, None for one that is gone (a zombie is gone: it runs nothing)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return None if state in ("Z", "X") else (state, int(ppid))


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _stat(int(entry.name))) is not None:
            children.setdefault(found[1], []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _kill_and_check(proc: subprocess.Popen, training: Callable[[], bool], least: int) -> None:
    """Once ``training()``, SIGKILL ``proc``; every descendant it had must end within 10 s."""
    children: set[int] = set()
    try:
        assert _wait(lambda: training() or proc.poll() is not None, 600), "the children never started training"
        assert proc.poll() is None, "the command finished before it could be killed; make its runs longer"
        children = _descendants(proc.pid)
        assert len(children) >= least, children
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _wait(lambda: all(_stat(c) is None for c in children), 10), \
            f"left running: {[c for c in children if _stat(c) is not None]}"
    finally:  # never leave a test's processes behind, whatever failed (orphans are no longer descendants)
        for pid in children | _descendants(proc.pid) | {proc.pid}:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _tasgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "tasgen_cli", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_killed_study_leaves_no_worker_and_the_next_one_proceeds(tmp_path: Path, teacher_weights: Path) -> None:
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="orphans", teacher={"checkpoint": str(teacher_weights)},
                                               data={"num_samples": 480, "image_size": 16}, train={"epochs": 2}))
    folder = tmp_path / "study"
    cmd = _tasgen("study", str(spec), "--methods", "none,kd", "--seeds", "1", "--jobs", "2", "-o", str(folder))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    runs = [folder / "orphans" / f"{m}-seed0" for m in ("none", "kd")]
    # Two workers, each holding its run folder's lock, and the resource tracker.
    _kill_and_check(proc, lambda: all((r / "spec.yaml").is_file() for r in runs), least=3)
    again = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "in use" not in again.stderr and "[2/2]" in again.stdout


@pytest.mark.slow
def test_a_killed_train_nproc_leaves_no_torchrun_and_the_run_proceeds(tmp_path: Path, teacher_weights: Path) -> None:
    spec = write_spec_file(tmp_path, spec_dict(tmp_path, name="ddp", teacher={"checkpoint": str(teacher_weights)},
                                               distill={"method": "kd"},
                                               data={"num_samples": 960, "image_size": 16}, train={"epochs": 2}))
    proc = subprocess.Popen(_tasgen("train", str(spec), "--nproc", "2"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=_env())
    run = tmp_path / "runs" / "ddp"
    # torchrun and its two trainers (grandchildren of `tasgen train`), training once rank 0 wrote the spec.
    _kill_and_check(proc, lambda: (run / "spec.yaml").is_file(), least=3)
    resume = ["--resume"] if (run / "last").exists() else []  # killed before its first checkpoint: start afresh
    again = subprocess.run(_tasgen("train", str(spec), *resume), capture_output=True, text=True, env=_env(),
                           timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "in use" not in again.stderr and "finished" in again.stdout


def test_a_child_whose_parent_is_already_gone_ends_at_once() -> None:
    # The race the pid check closes: the parent dies before the child asks for the signal.
    code = ("import sys; from tasgen.parent_death import die_with_parent; "
            "die_with_parent(int(sys.argv[1])); print('still running')")
    probe = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE, text=True)
    dead_pid = int(probe.communicate()[0])
    result = subprocess.run([sys.executable, "-c", code, str(dead_pid)], capture_output=True, text=True, env=_env())
    assert result.returncode == -signal.SIGKILL and "still running" not in result.stdout
    alive = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True, env=_env())
    assert alive.returncode == 0 and "still running" in alive.stdout
