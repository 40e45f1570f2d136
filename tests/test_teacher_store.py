"""The teacher store: its key, its lock, and `tasgen teachers`."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasgen.spec.load import load_spec
from tasgen.teacher_store import TeacherStore, teacher_key
from tasgen_cli.app import app
from tests.train.conftest import spec_dict, write_spec_file


def _key(tmp_path: Path, *overrides: str, **over: object) -> str:
    path = write_spec_file(tmp_path, spec_dict(tmp_path, **over))
    return teacher_key(load_spec(path, overrides).spec, 10)


def test_the_key_follows_what_fits_the_teacher_not_the_run(tmp_path: Path) -> None:
    key = _key(tmp_path, train={"teacher_epochs": 3})
    same = [
        "name=other", f"train.output_dir={tmp_path / 'elsewhere'}", "distill.method=kd", "train.epochs=7",
        "student.stages.0.channels=4", "data.num_workers=0", "data.train_samples=10", "train.loggers=[jsonl]",
        "train.ema.enabled=true", "train.compile=true",
    ]
    assert _key(tmp_path, *same, train={"teacher_epochs": 3}) == key
    for changed in ("seed=1", "data.split_seed=1", "data.val_fraction=0.2", "data.image_size=16",
                    "train.teacher_epochs=4", "train.optimizer.lr=0.1", "teacher.stages.0.channels=8",
                    "distill.ce.label_smoothing=0.2", "data.augment.hflip=0"):
        assert _key(tmp_path, changed, train={"teacher_epochs": 3}) != key, changed
    assert teacher_key(load_spec(write_spec_file(tmp_path, spec_dict(tmp_path))).spec, 100) != _key(tmp_path)


def _fake_teacher(store: TeacherStore, key: str, top1: float = 91.5) -> None:
    stored = store.teacher(key)
    stored.folder.mkdir(parents=True)
    stored.weights.write_bytes(b"\0" * 4096)
    stored.entry_file.write_text(json.dumps({"key": key, "model": "resnet18", "data": "digits", "image_size": 32,
                                             "seed": 0, "teacher_top1": top1, "epochs": 1, "last_used": 1.0}))


def test_teachers_lists_and_removes(teacher_store: Path) -> None:
    store = TeacherStore()
    _fake_teacher(store, "aaaa1111bbbb2222")
    _fake_teacher(store, "aaaa3333cccc4444")
    runner = CliRunner()
    listed = runner.invoke(app, ["teachers"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    for text in ("aaaa1111bbbb2222", "resnet18", "digits", "91.50", "0.0 MiB", "1970-01-01"):
        assert text in listed.output
    ambiguous = runner.invoke(app, ["teachers", "--remove", "aaaa"])
    assert ambiguous.exit_code == 2 and "give more of the key" in ambiguous.output
    missing = runner.invoke(app, ["teachers", "--remove", "ffff"])
    assert missing.exit_code == 2 and "no stored teacher" in missing.output and "Traceback" not in missing.output
    removed = runner.invoke(app, ["teachers", "--remove", "aaaa1"])
    assert removed.exit_code == 0 and [t.key for t in store.teachers()] == ["aaaa3333cccc4444"]
    assert runner.invoke(app, ["teachers", "--remove-all"]).exit_code == 0 and store.teachers() == []
    assert "no stored teachers" in runner.invoke(app, ["teachers"]).output


def test_listing_teachers_imports_no_torch(tmp_path: Path) -> None:
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom tasgen_cli.app import app\n"
            "result = CliRunner().invoke(app, ['teachers'])\nassert result.exit_code == 0, result.output\n"
            "assert 'torch' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={"TASGEN_CACHE_DIR": str(tmp_path), "PATH": ""})
    assert result.returncode == 0, result.stderr


def test_a_run_waits_for_the_fit_in_progress_and_reuses_it(tmp_path: Path, teacher_store: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs needing one teacher: the second waits on the store's lock, then reads what the first wrote."""
    import tasgen.train.run as run_module
    from tasgen.compiler import plan_spec
    from tasgen.train import train

    loaded = load_spec(write_spec_file(tmp_path, spec_dict(tmp_path)))
    key = teacher_key(loaded.spec, plan_spec(loaded).num_classes)
    store = TeacherStore()
    # Another process holds the lock while it "fits", then writes the teacher and lets go.
    fitter = textwrap.dedent(f"""
        import fcntl, json, os, sys, time
        from pathlib import Path
        root = Path({str(teacher_store)!r}); root.mkdir(parents=True, exist_ok=True)
        fd = os.open(root / "{key}.lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("locked", flush=True)
        time.sleep(1.5)
        (root / "{key}").mkdir()
        (root / "{key}" / "teacher.json").write_text(json.dumps({{"epochs": 2, "teacher_top1": 77.0}}))
        (root / "{key}" / "teacher.safetensors").write_bytes(b"weights")
    """)
    process = subprocess.Popen([sys.executable, "-c", fitter], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"

        def no_second_fit(*args: object, **kwargs: object) -> None:
            raise AssertionError("the teacher was fitted a second time")

        monkeypatch.setattr(run_module, "train_loop", no_second_fit)
        result = train(loaded, role="teacher", quiet=True)
    finally:
        process.wait(timeout=30)
    assert result.finished and result.last == {"teacher_top1": 77.0}
    assert result.run_dir == store.teacher(key).fit_dir
