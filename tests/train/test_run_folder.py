"""One writer per run folder, one commit per epoch, integrity, disk space."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tasgen.checkpoint as checkpoint_module
from tasgen.checkpoint import CheckpointError, file_sha256, load_checkpoint, read_manifest
from tasgen.train import TrainError, train
from tasgen.train.run_folder import RunFolder, read_rows


def _parts(value: float) -> dict[str, dict[str, torch.Tensor]]:
    return {"student": {"w": torch.full((64,), value)}}


def _commit(folder: RunFolder, epoch: int, *, improved: bool, rows: list, best_epoch: int) -> int:
    rows.append({"epoch": epoch, "student_top1": float(epoch)})
    state = {"epoch": epoch, "epochs": 5, "best_epoch": best_epoch}
    return folder.commit_epoch(_parts(epoch), state, {}, rows, improved=improved, estimate=1000)


def _rows_file(folder: RunFolder) -> list[dict]:
    return [json.loads(line) for line in folder.metrics_jsonl.read_text().splitlines()]


# ------------------------------------------------------------------ one writer
def test_second_writer_is_refused_naming_the_pid(make_spec):
    spec = make_spec(name="busy")
    folder = RunFolder(spec.spec.train.output_dir / "busy")
    with folder.lock():
        with pytest.raises(TrainError, match=rf"in use: another tasgen process \(pid {os.getpid()}\)"):
            train(spec, quiet=True)
    assert not folder.last.exists()
    train(spec, max_epochs=1, quiet=True)  # released: the run starts


def test_a_killed_writer_leaves_no_stale_lock(tmp_path):
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tasgen.train.run_folder import RunFolder\n"
        "with RunFolder(Path(sys.argv[1])).lock():\n"
        "    print('locked', flush=True)\n"
        "    time.sleep(600)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(TrainError, match=rf"pid {child.pid}\)"), RunFolder(tmp_path / "run").lock():
            pass
    finally:
        child.kill()  # SIGKILL: no cleanup code runs in the child
        child.wait()
    with RunFolder(tmp_path / "run").lock():
        assert (tmp_path / "run" / ".lock").read_text().strip() == str(os.getpid())


def test_fresh_run_refuses_a_folder_holding_a_run_unless_overwrite(make_spec):
    spec = make_spec(name="kept")
    first = train(spec, max_epochs=1, quiet=True)
    def files():
        return {p: p.stat().st_mtime_ns for p in first.run_dir.rglob("*") if p.is_file() and p.name != ".lock"}

    before = files()
    with pytest.raises(TrainError) as err:
        train(spec, quiet=True)
    message = str(err.value)
    assert "a run stopped after epoch 1 of 2" in message and "--resume" in message
    assert "--overwrite starts over and removes last, best, metrics.jsonl, metrics.csv" in message
    assert before == files()
    again = train(spec, overwrite=True, quiet=True)
    assert again.finished and [r["epoch"] for r in _rows_file(RunFolder(again.run_dir))] == [1, 2]


def test_resume_of_a_finished_run_returns_its_result_and_writes_nothing(make_spec):
    spec = make_spec(name="done")
    result = train(spec, quiet=True)
    files = {p: p.stat().st_mtime_ns for p in result.run_dir.rglob("*") if p.is_file() and p.name != ".lock"}
    again = train(spec, resume=True, quiet=True)
    assert again.finished and again.epochs_done == result.epochs_done and again.best_top1 == result.best_top1
    assert [p.name for p, t in files.items() if p.stat().st_mtime_ns != t] == []


# --------------------------------------------------------------- the commit
def test_commit_holds_rows_and_best_links_last(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.check_writable()
    rows: list = []
    written = _commit(folder, 1, improved=True, rows=rows, best_epoch=1)
    _commit(folder, 2, improved=False, rows=rows, best_epoch=1)
    assert written == sum(f.stat().st_size for f in (tmp_path / "run" / "best").iterdir())
    assert [r["epoch"] for r in read_rows(folder.last)] == [1, 2] == [r["epoch"] for r in _rows_file(folder)]
    assert read_manifest(folder.best)["epoch"] == 1 and read_manifest(folder.last)["best_epoch"] == 1
    parts, _ = load_checkpoint(folder.best)
    assert torch.equal(parts["student"]["w"], _parts(1)["student"]["w"])
    assert sorted(p.name for p in folder.path.iterdir()) == ["best", "last", "metrics.csv", "metrics.jsonl"]


def test_crash_between_last_and_best_is_repaired(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path / "run")
    folder.check_writable()
    rows: list = []
    _commit(folder, 1, improved=True, rows=rows, best_epoch=1)
    run_folder_module = sys.modules[RunFolder.__module__]  # tasgen.train re-exports a function of that name

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder_module, "link_checkpoint", full_disk)
    with pytest.raises(TrainError, match="ran out of space while saving epoch 2.*Epoch 2 is saved in"):
        _commit(folder, 2, improved=True, rows=rows, best_epoch=2)
    monkeypatch.undo()
    assert read_manifest(folder.best)["epoch"] == 1
    assert folder.checkpoint("best") == folder.last  # readers already take the best epoch from last/
    folder.repair(folder.last, read_manifest(folder.last), read_rows(folder.last))
    assert read_manifest(folder.best)["epoch"] == 2 and len(_rows_file(folder)) == 2


def test_full_disk_inside_a_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path / "run")
    folder.check_writable()
    rows: list = []
    _commit(folder, 1, improved=True, rows=rows, best_epoch=1)
    real = checkpoint_module.save_weights

    def half_then_full(tensors, path, metadata=None):
        real(tensors, path, metadata)  # the weights land, then the state does not fit
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_weights", half_then_full)
    with pytest.raises(TrainError) as err:
        _commit(folder, 2, improved=True, rows=rows, best_epoch=2)
    assert "ran out of space while saving epoch 2" in str(err.value)
    assert f"The last good checkpoint (epoch 1) stays in {folder.last}" in str(err.value)
    assert sorted(p.name for p in folder.path.iterdir()) == ["best", "last", "metrics.csv", "metrics.jsonl"]
    assert read_manifest(folder.last)["epoch"] == 1 and len(_rows_file(folder)) == 1


def test_not_enough_space_for_the_next_checkpoint_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    folder = RunFolder(tmp_path / "run")
    folder.check_writable()
    rows: list = []
    size = _commit(folder, 1, improved=True, rows=rows, best_epoch=1)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9, size // 2))
    with pytest.raises(TrainError, match="not enough disk space for the checkpoint of epoch 2"):
        folder.commit_epoch(_parts(2), {"epoch": 2}, {}, [*rows, {"epoch": 2}], improved=False, estimate=size)
    assert read_manifest(folder.last)["epoch"] == 1


def test_first_estimate_covers_the_real_checkpoint(make_spec, monkeypatch):
    asked: list[int] = []
    real = RunFolder.check_space

    def record(self, need_bytes, *args, **kwargs):
        asked.append(need_bytes)
        return real(self, need_bytes, *args, **kwargs)

    monkeypatch.setattr(RunFolder, "check_space", record)
    result = train(make_spec(name="size", train={"optimizer": {"name": "adamw", "lr": 1e-3}}), max_epochs=1, quiet=True)
    size = sum(f.stat().st_size for f in (result.run_dir / "last").iterdir())
    one_checkpoint = asked[0] // 2  # the start asks for last/ and the next epoch's copy
    assert size <= one_checkpoint < 2 * size


def test_leftovers_of_an_interrupted_save_are_cleaned_and_old_adopted(make_spec):
    spec = make_spec(name="left")
    result = train(spec, max_epochs=1, quiet=True)
    run = result.run_dir
    (run / "last.tmp").mkdir()
    (run / "last.tmp" / "model.safetensors").write_bytes(b"half")
    (run / ".metrics.jsonl.abc.tmp").write_text("half a row")
    (run / "best").rename(run / "best.old")  # a kill between the two renames of best/
    resumed = train(spec, resume=True, quiet=True)
    assert resumed.finished
    names = sorted(p.name for p in run.iterdir() if not p.name.startswith(".lock"))
    assert "last.tmp" not in names and "best.old" not in names and "best" in names
    assert not list(run.glob(".*.tmp"))


# ---------------------------------------------------------------- integrity
def test_flipped_bytes_are_refused_by_resume_eval_and_export(make_spec, tmp_path):
    from tasgen.train import evaluate, export_student

    spec = make_spec(name="flip")
    result = train(spec, max_epochs=1, quiet=True)
    weights = result.run_dir / "last" / "model.safetensors"  # best/ is a hard link of the same file
    data = bytearray(weights.read_bytes())
    data[-64:] = bytes(b ^ 0x5A for b in data[-64:])
    weights.write_bytes(bytes(data))
    pattern = r"model\.safetensors fails its integrity check"
    with pytest.raises(CheckpointError, match=pattern):
        train(spec, resume=True, quiet=True)
    with pytest.raises(CheckpointError, match=pattern):
        evaluate(result.run_dir)
    with pytest.raises(CheckpointError, match=pattern):
        export_student(result.run_dir, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_a_missing_file_is_named(make_spec):
    spec = make_spec(name="gap")
    result = train(spec, max_epochs=1, quiet=True)
    (result.run_dir / "last" / "state.pt").unlink()
    with pytest.raises(CheckpointError, match=r"last lacks state\.pt"):
        train(spec, resume=True, quiet=True)


def test_a_state_holding_code_is_refused_without_the_unsafe_hint(make_spec):
    spec = make_spec(name="code")
    result = train(spec, max_epochs=1, quiet=True)
    last = result.run_dir / "last"
    torch.save({"epoch": 1, "payload": Path("x")}, last / "state.pt")  # a pickled class: code to run
    manifest = json.loads((last / "manifest.json").read_text())
    manifest["files"]["state.pt"] = {"bytes": (last / "state.pt").stat().st_size, "sha256": file_sha256(last / "state.pt")}
    (last / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError) as err:
        train(spec, resume=True, quiet=True)
    assert "holds Python objects" in str(err.value) and "weights_only" not in str(err.value)


def test_resuming_a_copied_run_under_another_name_says_so(make_spec):
    import shutil

    first = train(make_spec(name="orig"), max_epochs=1, quiet=True)
    shutil.copytree(first.run_dir, first.run_dir.parent / "copy")
    with pytest.raises(TrainError, match="holds the run 'orig' \\(copied or renamed\\?\\)"):
        train(make_spec(name="copy"), resume=True, quiet=True)


def test_changed_keys_are_named(make_spec):
    train(make_spec(name="x"), max_epochs=1, quiet=True)
    with pytest.raises(TrainError, match=r"Changed since that run: distill\.feature\.dim"):
        train(make_spec(name="x", distill={"feature": {"dim": 8}}), resume=True, quiet=True)


# ------------------------------------------------------------------ warnings
def test_suspicious_splits_warn(make_spec):
    with pytest.warns(UserWarning, match="the eval split holds 1 image, fewer than the 10 classes"):
        train(make_spec(name="tiny", data={"num_samples": 40, "eval_fraction": 0.02, "batch_size": 8}),
              max_epochs=1, quiet=True)

