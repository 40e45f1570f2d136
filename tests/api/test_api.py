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


def test_compile_chooses_kd_temperature_auto_as_the_trainer_does(make_spec) -> None:
    """The trainer's choice, from the same teacher and images (an untrained teacher: below)."""
    from tasgen.data import build_datasets
    from tasgen.losses.logit_temperature import choose_logit_temperature, teacher_confidence

    for threshold in (0.99, 0.01):
        loaded = make_spec(distill={"logits": {"auto_threshold": threshold}})
        compiled = tasgen.compile(loaded, device="cpu")
        confidence, _ = teacher_confidence(compiled.system, build_datasets(loaded.spec.data).train,
                                           torch.device("cpu"))
        assert compiled.objective.logit_temperature == choose_logit_temperature(confidence, threshold)
        assert compiled.objective.logit_temperature == (1.0 if threshold == 0.99 else 4.0)  # the teacher is unsure


def test_compile_without_teacher_weights_says_how_to_get_them(tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, spec_dict(tmp_path))
    with pytest.raises(TrainError, match="--role teacher"):
        tasgen.compile(path, device="cpu")
    compiled = tasgen.compile(path, ["distill.method=kd"], device="cpu", untrained_teacher=True)
    assert compiled.plan.method == "kd" and compiled.system.uses_teacher
    untrained = tasgen.compile(path, ["distill.logits.auto_threshold=0.99"], device="cpu", untrained_teacher=True)
    assert untrained.objective.needs_teacher_confidence and untrained.objective.logit_temperature == 4.0


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


class _OwnNet(torch.nn.Module):
    """A researcher's own CNN with timm's model interface (feature_info, forward_features, forward_head)."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (8, 16, 24, 32)) -> None:
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, reduction, self.feature_info = [], 1, []
        for i, (c_in, c_out) in enumerate(zip(widths, widths[1:], strict=False)):
            reduction *= 2
            blocks.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU()))
            self.feature_info.append({"module": f"stages.{i}", "num_chs": c_out, "reduction": reduction})
        self.stages = nn.Sequential(*blocks)
        self.num_features = widths[-1]
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        return x if pre_logits else self.fc(x)

    def forward_intermediates(self, x: torch.Tensor, indices: list[int], intermediates_only: bool = True,
                              **_: object) -> list[torch.Tensor]:
        outputs, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return [outputs[i] for i in indices]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def test_compile_takes_model_objects_read_as_they_are(tmp_path: Path) -> None:
    import timm

    # The spec names other models; the objects win, and their tables come from the objects
    # (the ViT's non-default width and depth could not be re-created from its name).
    path = write_spec_file(tmp_path, spec_dict(tmp_path))
    torch.manual_seed(0)
    teacher = timm.create_model("vit_tiny_patch16_224", num_classes=10, img_size=32, patch_size=8, depth=4,
                                embed_dim=64, num_heads=2)
    student = _OwnNet()
    weights = {k: v.clone() for k, v in teacher.state_dict().items()}
    compiled = tasgen.compile(path, teacher=teacher, student=student, device="cpu")
    plan, system, objective = compiled
    assert plan.teacher.source == "timm" and plan.teacher.model == "vit_tiny_patch16_224 (VisionTransformer object)"
    assert plan.teacher.head.num_features == 64 and len(plan.teacher.stages) == 4
    assert plan.student.source == "module" and [s.channels for s in plan.student.stages] == [16, 24, 32]
    assert system.teacher is teacher and compiled.student is student  # used, not copied or re-initialised
    assert all(torch.equal(weights[k], v) for k, v in teacher.state_dict().items())
    assert plan.local_role == "student" and system.assistant is not None

    system.train()
    images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss, terms = objective(system(images), labels)
    loss.backward()
    assert torch.isfinite(loss) and student.fc.weight.grad is not None
    assert not any(p.requires_grad for p in teacher.parameters())
    with torch.no_grad():  # the system's teacher is the object, as it was trained
        torch.testing.assert_close(system(images)["teacher"][0], teacher(system.norm_teacher(images)))


def test_compile_says_which_model_object_it_cannot_read(tmp_path: Path) -> None:
    from tasgen.arch.introspect import ModelReadError

    path = write_spec_file(tmp_path, spec_dict(tmp_path))
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 10))
    with pytest.raises(ModelReadError, match=r"the teacher you passed \(Sequential object\) has no feature_info, "
                                             r"forward_features, forward_head, forward_intermediates: .*timm.create_model"):
        tasgen.compile(path, teacher=plain, device="cpu")
    with pytest.raises(ModelReadError, match=r"the student you passed \(_OwnNet object\) outputs 7 classes, "
                                             r"the run has 10: .*num_classes"):
        tasgen.compile(path, student=_OwnNet(num_classes=7), device="cpu", untrained_teacher=True)


class _ScaledNet(_OwnNet):
    """Work between its modules, which only the graph reader reproduces."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x) * 0.5 + 0.1
        return x


def test_compile_reads_an_own_module_as_a_graph_when_its_forward_does_more(tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, spec_dict(tmp_path))
    student = _ScaledNet()
    compiled = tasgen.compile(path, student=student, device="cpu", untrained_teacher=True)
    assert compiled.plan.student.reader == "graph" and compiled.plan.student.source == "module"
    system = compiled.system.eval()
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        out = system(images)
        torch.testing.assert_close(out["student"][0], student(system.norm_student(images)))
    assert out["assistant"][0].shape == (2, 10)
