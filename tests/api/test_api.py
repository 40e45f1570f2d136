"""`tasgen.compile`: the CLI trainer's objects, in a user's loop; the docs example and examples/ run."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tasgen
from tasgen.train.errors import TrainError

from .conftest import spec_dict, write_spec_file

ROOT = Path(__file__).resolve().parents[2]


def test_import_tasgen_stays_light() -> None:
    code = "import sys, tasgen; assert 'torch' not in sys.modules; assert callable(tasgen.compile); print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_compile_gives_the_trainers_objects(make_spec) -> None:
    from tasgen.compiler import plan_spec
    from tasgen.train.setup import build_student_setup, run_folder
    from tasgen.train.weights import teacher_source

    loaded = make_spec()
    compiled = tasgen.compile(loaded, device="cpu")
    plan, system, objective = compiled
    assert plan == plan_spec(loaded)
    setup = build_student_setup(loaded.spec, plan, run_folder(loaded.spec), torch.device("cpu"),
                                teacher_source(loaded.spec, run_folder(loaded.spec), plan.num_classes))
    assert type(system) is type(setup.system) and type(objective) is type(setup.objective)
    assert list(compiled.trainable) == list(setup.optimised) == ["student", "assistant", "objective"]
    assert {k: v.shape for k, v in compiled.trainable.state_dict().items()} == {
        k: v.shape for k, v in setup.optimised.state_dict().items()
    }
    # The teacher is the spec's checkpoint, frozen; the optimizer never sees it.
    teacher = system.teacher
    assert not any(p.requires_grad for p in teacher.parameters())
    optimised = {id(p) for p in compiled.parameters()}
    assert optimised and not optimised & {id(p) for p in teacher.parameters()}

    # One step of a user's loop moves the student and leaves the teacher alone.
    train_loader, eval_loader = compiled.loaders()
    images, labels = next(iter(train_loader))
    before_t = [p.clone() for p in teacher.parameters()]
    before_s = [p.clone() for p in compiled.student.parameters()]
    optimizer = torch.optim.SGD(compiled.parameters(), lr=0.1)
    system.train()
    loss, terms = objective(system(images), labels)
    assert torch.isfinite(loss) and {"ce", "teacher_student.feature"} <= set(terms)
    loss.backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before_t, teacher.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before_s, compiled.student.parameters(), strict=True))
    assert len(eval_loader.dataset) > 0


def test_compile_without_teacher_weights_says_how_to_get_them(tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, spec_dict(tmp_path))
    with pytest.raises(TrainError, match="--role teacher"):
        tasgen.compile(path, device="cpu")
    compiled = tasgen.compile(path, ["distill.method=kd"], device="cpu", untrained_teacher=True)
    assert compiled.plan.method == "kd" and compiled.system.uses_teacher


def test_compile_reports_spec_errors_located(tmp_path: Path) -> None:
    from tasgen.spec import SpecError

    path = write_spec_file(tmp_path, spec_dict(tmp_path))
    with pytest.raises(SpecError, match=r"--set:1:\d+: train.epochs"):
        tasgen.compile(path, ["train.epochs=0"])


def _python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)


def test_docs_api_example_runs(tmp_path: Path, monkeypatch) -> None:
    """The Python examples of docs/api.md and README.md, as written, after a stand-in teacher (random weights)."""
    from tasgen.arch.models import create_model
    from tasgen.checkpoint import save_weights
    from tasgen.spec import load_spec

    (tmp_path / "specs").symlink_to(ROOT / "specs")
    monkeypatch.chdir(tmp_path)
    spec = load_spec("specs/quickstart.yaml").spec
    teacher = create_model(spec.teacher, num_classes=10, image_size=spec.data.image_size)
    (tmp_path / "runs" / "quickstart").mkdir(parents=True)
    save_weights(teacher.state_dict(), tmp_path / "runs" / "quickstart" / "teacher.safetensors")
    for doc in ("docs/api.md", "README.md"):
        blocks = _python_blocks(ROOT / doc)
        assert blocks, doc
        for block in blocks:
            exec(compile(block, doc, "exec"), {"__name__": "__docs__"})  # noqa: S102
    assert (tmp_path / "student.pt").is_file()


def _example_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture
def example_spec(tmp_path: Path, teacher_weights: Path) -> Path:
    return write_spec_file(tmp_path, spec_dict(tmp_path, teacher={"checkpoint": str(teacher_weights)}))


def test_plain_pytorch_example_runs(example_spec: Path) -> None:
    script = ROOT / "examples" / "train_loop.py"
    assert len(script.read_text().splitlines()) <= 60
    out = subprocess.run([sys.executable, str(script), str(example_spec), "--set", "train.epochs=1", "--steps", "2"],
                         capture_output=True, text=True, env=_example_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.search(r"epoch 1: loss \d+\.\d+  student top-1 \d+\.\d+%  \(tas\)", out.stdout), out.stdout


@pytest.mark.skipif(importlib.util.find_spec("lightning") is None,
                    reason="Lightning is an optional extra (pip install 'tasgen[lightning]')")
def test_lightning_example_runs(example_spec: Path) -> None:
    script = ROOT / "examples" / "lightning_module.py"
    out = subprocess.run([sys.executable, str(script), str(example_spec), "--set", "train.epochs=1", "--steps", "2"],
                         capture_output=True, text=True, env=_example_env(), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "'val/student_top1'" in out.stdout and "'train/loss'" in out.stdout, out.stdout
