"""Crash test of `tasgen train`: SIGKILLs at random times and inside checkpoint saves, two
writers on one folder, and a disk that fills up; every run is resumed and compared with
an uninterrupted one.

    python tests/crashtest.py                      # 10 random kills, 4 kills in saves, ...
    python tests/crashtest.py --random 2 --saves 2 --json figures.json

A trial passes when, after the resume, the student's weights (``last/`` and ``best/``)
equal the uninterrupted run's bit for bit, the metrics rows are exactly epochs 1..E once
each with the uninterrupted run's values, ``best/`` holds the epoch of the best top-1 in
the metrics, and no ``*.tmp`` / ``*.old`` folder is left. See docs/reliability.md.

A kill "inside a save" is made by the child itself: it counts the file-system steps of
checkpoint commits (renames, hard links, folder fsyncs in the run folder) and SIGKILLs
itself before step N, N drawn at random.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
from tests.train.conftest import STUDENT, TEACHER  # noqa: E402 - the suite's tiny models

TIMING = ("seconds", "images_per_s", "mfu")  # the only columns that may differ between runs
ENV_KILL_AT = "TASGEN_CRASH_KILL_AT"  # read by the child entry point below, never by tasgen


# ------------------------------------------------------------------ the child
def child_main(argv: list[str]) -> None:
    """``crash_test.py --child RUN_DIR COUNT_FILE -- tasgen args``: train, SIGKILL at save step N."""
    run_dir, count_file = Path(argv[0]).resolve(), Path(argv[1])
    kill_at = int(os.environ.get(ENV_KILL_AT, "0"))
    steps = 0

    def step(path: Any) -> None:
        nonlocal steps
        if str(run_dir) not in str(Path(path).resolve()):
            return
        steps += 1
        if steps == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    import tasgen.checkpoint as ckpt

    real_replace, real_link, real_fsync_dir = os.replace, os.link, ckpt._fsync_dir

    def replace(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        step(dst)
        real_replace(src, dst, *a, **k)

    def link(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        step(dst)
        real_link(src, dst, *a, **k)

    def fsync_dir(folder: Path) -> None:
        step(folder)
        real_fsync_dir(folder)

    os.replace, os.link, ckpt._fsync_dir = replace, link, fsync_dir

    def report_count() -> None:
        count_file.write_text(str(steps))

    import atexit

    atexit.register(report_count)
    from tasgen_cli.app import main

    sys.argv = ["tasgen", *argv[3:]]
    main()


# ----------------------------------------------------------------- the parent
class Harness:
    """Runs `tasgen train` children on one spec, each trial in its own output folder."""

    def __init__(self, work: Path, epochs: int) -> None:
        self.work, self.epochs = work, epochs
        self.teacher = work / "teacher.safetensors"
        self.spec = work / "crash.yaml"
        self._write_inputs()

    def _write_inputs(self) -> None:
        import torch
        import yaml

        from tasgen.arch.models import create_model
        from tasgen.checkpoint import save_weights
        from tasgen.spec.schema import BackboneSpec

        torch.manual_seed(123)
        model = create_model(BackboneSpec.model_validate(TEACHER), num_classes=10, image_size=32)
        save_weights(model.state_dict(), self.teacher)
        spec = {
            "name": "crash",
            "teacher": {**TEACHER, "checkpoint": str(self.teacher)},
            "student": STUDENT,
            "distill": {"method": "tas", "feature": {"dim": 16}},
            # mixup, hflip and EMA: every RNG and every piece of state must survive a kill
            "data": {"dataset": "synthetic", "image_size": 32, "batch_size": 16, "num_samples": 96,
                     "augment": {"mixup": 0.2, "hflip": 0.5}},
            "train": {"epochs": self.epochs, "output_dir": str(self.work / "runs"), "log_interval": 1,
                      "ema": {"enabled": True, "decay": 0.9},
                      "optimizer": {"name": "sgd", "lr": 0.05}, "schedule": {"name": "cosine", "warmup_epochs": 1}},
        }
        self.spec.write_text(yaml.safe_dump(spec, sort_keys=False))

    def run_dir(self, trial: str) -> Path:
        return self.work / "trials" / trial / "crash"

    def command(self, trial: str, *extra: str, kill_at: int = 0, out: Path | None = None) -> tuple[list[str], dict[str, str]]:
        out = out or self.run_dir(trial).parent
        args = ["train", str(self.spec), "--set", f"train.output_dir={out}", *extra]
        child = [sys.executable, str(Path(__file__).resolve()), "--child", str(out / "crash"),
                 str(self.work / f"{trial}.steps"), "--", *args]
        return child, {**os.environ, ENV_KILL_AT: str(kill_at)}

    def start(self, trial: str, *extra: str, kill_at: int = 0) -> subprocess.Popen:
        cmd, env = self.command(trial, *extra, kill_at=kill_at)
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def run(self, trial: str, *extra: str, kill_at: int = 0) -> tuple[int, str]:
        proc = self.start(trial, *extra, kill_at=kill_at)
        out, _ = proc.communicate()
        return proc.returncode, out

    def resume(self, trial: str) -> tuple[int, str]:
        """Continue a killed run: --resume when a checkpoint was committed, else start it again."""
        run = self.run_dir(trial)
        committed = (run / "last").is_dir() or (run / "last.old").is_dir()
        return self.run(trial, *(["--resume"] if committed else []))

    def steps(self, trial: str) -> int:
        return int((self.work / f"{trial}.steps").read_text())


def _tensors(file: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    return load_file(str(file))


def _same_weights(a: Path, b: Path) -> bool:
    x, y = _tensors(a), _tensors(b)
    return x.keys() == y.keys() and all(x[k].dtype == y[k].dtype and (x[k] == y[k]).all() for k in x)


def _rows(run: Path) -> list[dict[str, Any]]:
    file = run / "metrics.jsonl"
    return [json.loads(line) for line in file.read_text().splitlines()] if file.is_file() else []


def check(run: Path, reference: Path, epochs: int) -> dict[str, Any]:
    """Compare a resumed run folder with the uninterrupted one."""
    rows, ref_rows = _rows(run), _rows(reference)
    numbers = [r.get("epoch") for r in rows]
    expected = list(range(1, epochs + 1))
    strip = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    ref_strip = [{k: v for k, v in r.items() if k not in TIMING} for r in ref_rows]
    # best/ is chosen on the validation split (the test split only when there is none).
    key = "val_student_top1" if rows and "val_student_top1" in rows[0] else "student_top1"
    top1 = [r[key] for r in rows]
    best_epoch = rows[top1.index(max(top1))]["epoch"] if rows else None
    manifest = json.loads((run / "best" / "manifest.json").read_text()) if (run / "best").is_dir() else {}
    leftovers = sorted(p.name for p in run.iterdir() if p.suffix in (".tmp", ".old"))
    result = {
        "identical": (run / "last").is_dir() and _same_weights(run / "last" / "model.safetensors",
                                                             reference / "last" / "model.safetensors"),
        "best_identical": (run / "best").is_dir() and _same_weights(run / "best" / "model.safetensors",
                                                                  reference / "best" / "model.safetensors"),
        "rows_complete": numbers == expected,
        "rows_lost": len(set(expected) - set(numbers)),
        "rows_duplicated": len(numbers) - len(set(numbers)),
        "rows_equal": strip == ref_strip,
        "best_is_best_epoch": manifest.get("epoch") == best_epoch,
        "leftovers": leftovers,
    }
    result["ok"] = all(result[k] for k in ("identical", "best_identical", "rows_complete", "rows_equal",
                                           "best_is_best_epoch")) and not leftovers
    return result


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.005)
    return path.exists()


# ---------------------------------------------------------------- the trials
def reference(h: Harness) -> tuple[Path, float, int]:
    """The uninterrupted run: its folder, its training seconds, its count of save steps."""
    proc = h.start("reference")
    _wait_for(h.run_dir("reference") / "plan.json", proc)  # written when training starts
    started = time.monotonic()
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"the uninterrupted run failed:\n{out}")
    return h.run_dir("reference"), time.monotonic() - started, h.steps("reference")


def random_kill(h: Harness, trial: str, ref: Path, seconds: float, rng: random.Random) -> dict[str, Any]:
    """SIGKILL at a random moment: in a random epoch, at a random time into it.

    The epoch is drawn first and the delay counted from its start (the previous
    commit), so that a busy machine still gets its kill during training; a run that
    finishes before its kill is started again with a new draw.
    """
    per_epoch = seconds / h.epochs
    attempts = 0
    while attempts < 3:
        attempts += 1
        shutil.rmtree(h.run_dir(trial).parent, ignore_errors=True)
        proc = h.start(trial)
        epoch = rng.randrange(h.epochs)
        run = h.run_dir(trial)
        _wait_for(run / "plan.json", proc)
        while proc.poll() is None and _committed(run) < epoch:
            time.sleep(0.005)
        delay = rng.uniform(0, per_epoch)
        time.sleep(delay)
        killed = proc.poll() is None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.communicate()
        if killed:
            break
    code, out = h.resume(trial)
    return {"trial": trial, "kind": "random", "epoch": epoch + 1, "after_s": round(delay, 3), "killed": killed,
            "attempts": attempts, "resume_exit": code, **check(h.run_dir(trial), ref, h.epochs),
            **({"output": out} if code else {})}


def _committed(run: Path) -> int:
    """The epoch of the run's last commit (0 before the first)."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads((run / "last" / "manifest.json").read_text())["epoch"]
    return 0


def save_kill(h: Harness, trial: str, ref: Path, total_steps: int, rng: random.Random) -> dict[str, Any]:
    kill_at = rng.randint(1, total_steps)
    code, _ = h.run(trial, kill_at=kill_at)
    killed = code == -signal.SIGKILL
    left = sorted(p.name for p in h.run_dir(trial).iterdir() if p.suffix in (".tmp", ".old"))
    code, out = h.resume(trial)
    return {"trial": trial, "kind": "in save", "step": kill_at, "of": total_steps, "killed": killed,
            "left_by_kill": left, "resume_exit": code, **check(h.run_dir(trial), ref, h.epochs),
            **({"output": out} if code else {})}


def concurrent(h: Harness, ref: Path) -> dict[str, Any]:
    """Two writers on one folder: one must refuse; the other's run must be whole."""
    first = h.start("concurrent")
    _wait_for(h.run_dir("concurrent") / ".lock", first)
    second = h.start("concurrent")
    out2, _ = second.communicate()
    out1, _ = first.communicate()
    refused = second.returncode == 2 and ("in use: another tasgen process" in out2 or "--overwrite" in out2)
    return {"trial": "concurrent", "kind": "two writers", "first_exit": first.returncode,
            "second_exit": second.returncode, "second_said": out2.strip().splitlines()[-1] if out2.strip() else "",
            "refused": refused, **check(h.run_dir("concurrent"), ref, h.epochs)}


def full_disk(h: Harness, ref: Path) -> dict[str, Any]:
    """A tmpfs that fills up during the run (root only); the save must fail cleanly, then resume."""
    mount = h.work / "tmpfs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        return {"trial": "full disk", "kind": "full disk", "skipped": "cannot mount a tmpfs (needs root)"}
    try:
        out_dir = mount / "runs"
        run = out_dir / "crash"
        cmd, env = h.command("disk", out=out_dir)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _wait_for(run / "last" / "manifest.json", proc)
        # Fill the disk while the run goes on: the next epoch's save hits a full disk.
        free = shutil.disk_usage(mount).free
        with open(mount / "filler", "wb") as f:
            os.posix_fallocate(f.fileno(), 0, max(free - 64 * 1024, 0))
        out, _ = proc.communicate()
        said = out.strip().splitlines()[-1] if out.strip() else ""
        left = sorted(p.name for p in run.iterdir() if p.suffix in (".tmp", ".old"))
        epoch_kept = json.loads((run / "last" / "manifest.json").read_text())["epoch"]
        (mount / "filler").unlink()
        cmd, env = h.command("disk", "--resume", out=out_dir)
        resumed = subprocess.run(cmd, env=env, capture_output=True, text=True)
        return {"trial": "full disk", "kind": "full disk", "exit": proc.returncode, "said": said,
                "left_by_failure": left, "epoch_kept": epoch_kept, "resume_exit": resumed.returncode,
                **check(run, ref, h.epochs)}
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--random", type=int, default=10, help="kills at random times")
    parser.add_argument("--saves", type=int, default=4, help="kills inside checkpoint saves")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-concurrent", action="store_true")
    parser.add_argument("--no-disk", action="store_true")
    parser.add_argument("--json", type=Path, help="write every trial's result here")
    parser.add_argument("--work", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="tasgen-crash-"))
    work.mkdir(parents=True, exist_ok=True)
    h = Harness(work, args.epochs)
    ref, seconds, total_steps = reference(h)
    print(f"uninterrupted run: {seconds:.1f} s of training, {total_steps} save steps", flush=True)
    trials = []
    for i in range(args.random):
        trials.append(random_kill(h, f"random{i}", ref, seconds, rng))
        print(json.dumps(trials[-1]), flush=True)
    for i in range(args.saves):
        trials.append(save_kill(h, f"save{i}", ref, total_steps, rng))
        print(json.dumps(trials[-1]), flush=True)
    if not args.no_concurrent:
        trials.append(concurrent(h, ref))
        print(json.dumps(trials[-1]), flush=True)
    if not args.no_disk:
        trials.append(full_disk(h, ref))
        print(json.dumps(trials[-1]), flush=True)
    kills = [t for t in trials if t["kind"] in ("random", "in save")]
    summary = {
        "trials": len(kills),
        "killed": sum(t["killed"] for t in kills),
        "resumed": sum(t["resume_exit"] == 0 for t in kills),
        "identical": sum(t["identical"] and t["best_identical"] for t in kills),
        "rows_lost": sum(t["rows_lost"] for t in kills),
        "rows_duplicated": sum(t["rows_duplicated"] for t in kills),
        "best_is_best_epoch": sum(t["best_is_best_epoch"] for t in kills),
        "all_ok": all(t.get("ok", "skipped" in t) and t.get("refused", True) for t in trials),
    }
    print(json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "trials": trials}, indent=1))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        sys.exit(main())
