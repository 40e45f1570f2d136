"""What a run trains, built from a spec and its plan: the `Setup` the loop consumes."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import timm
import torch
from torch import nn

from tasgen.checkpoint import CheckpointError, check_fits, load_checkpoint
from tasgen.compiler import build_models, build_system
from tasgen.emit.system import Solo
from tasgen.losses import TASObjective
from tasgen.plan import Plan
from tasgen.planner import plan_losses
from tasgen.spec.home import expand_user
from tasgen.spec.schema import CESpec, DistillSpec, Spec

from .errors import TrainError
from .weights import TeacherSource, load_initial_weights, load_teacher, teacher_source

Role = Literal["student", "teacher"]
TEACHER_FIT_DIR = "teacher"
"""Subfolder of a run where the teacher is fitted (its metrics and checkpoints)."""


@dataclass
class Setup:
    """Everything one training run needs.

    Attributes:
        role: "student" (distil) or "teacher" (fit the teacher alone with CE).
        spec: the resolved spec.
        plan: the plan.
        run_dir: where metrics and checkpoints go.
        key: what a checkpoint must match to be resumed (the plan hash for students).
        system: images in [0, 1] -> ``{name: (logits, pooled feature)}``; the trained
            model answers as "student".
        objective: ``(outputs, targets) -> (total, terms)``.
        optimised: everything the optimizer updates, by checkpoint prefix; never the
            teacher when distilling.
        trained_model: the model being trained (EMA and export follow it).
        epochs: epochs the schedule spans.
        device: where it all lives.
        uses_teacher: whether the system runs a (frozen) teacher.
    """

    role: Role
    spec: Spec
    plan: Plan
    run_dir: Path
    key: str
    system: nn.Module
    objective: nn.Module
    optimised: nn.ModuleDict
    trained_model: nn.Module
    epochs: int
    device: torch.device
    uses_teacher: bool

    @property
    def term_names(self) -> list[str]:
        return list(self.objective.term_names)


def run_folder(spec: Spec) -> Path:
    """``<train.output_dir>/<name>``."""
    return expand_user(spec.train.output_dir) / spec.name


def teacher_fit_key(plan: Plan) -> str:
    """What identifies a teacher fit: the teacher's stage table (not the student's)."""
    return "teacher-" + hashlib.sha256(plan.teacher.model_dump_json().encode()).hexdigest()[:16]


def build_teacher_setup(spec: Spec, plan: Plan, run_dir: Path, device: torch.device, *, init: bool = True) -> Setup:
    """Fit the teacher alone: CE with the spec's label smoothing, ``teacher_epochs`` (or ``epochs``).

    Args:
        init: start from the teacher's ``checkpoint:`` / ``pretrained:`` weights (False
            when a checkpoint of this fit will be loaded instead).
    """
    from tasgen.arch.models import create_model

    teacher = create_model(spec.teacher, num_classes=plan.num_classes, image_size=plan.image_size, device=device)
    if init:
        load_initial_weights(teacher, spec.teacher, role="teacher", num_classes=plan.num_classes,
                             image_size=plan.image_size)
    teacher = sync_batchnorm(teacher, spec, device)
    # CE even when the distillation spec weighs it 0: it is the only term of a teacher fit.
    ce_only = DistillSpec(method="none", ce=CESpec(weight=1.0, label_smoothing=spec.distill.ce.label_smoothing))
    return Setup(
        role="teacher", spec=spec, plan=plan, run_dir=run_dir / TEACHER_FIT_DIR, key=teacher_fit_key(plan),
        system=Solo(teacher, plan.teacher).to(device),
        objective=TASObjective(plan_losses(ce_only), {}, plan.num_classes).to(device),
        optimised=nn.ModuleDict({"teacher": teacher}), trained_model=teacher,
        epochs=spec.train.teacher_epochs or spec.train.epochs, device=device, uses_teacher=False,
    )


def build_student_setup(
    spec: Spec, plan: Plan, run_dir: Path, device: torch.device, teacher: TeacherSource | None, *, init: bool = True,
    num_train: int | None = None,
) -> Setup:
    """Distil the student with ``plan.method``; the teacher is loaded from ``teacher`` and frozen.

    Args:
        teacher: the teacher's weights; needed unless the method is ``none``.
        init: start the student from its ``checkpoint:`` / ``pretrained:`` weights.
        num_train: training images, for a method whose memory has a slot per image (crd).
    """
    teacher_model, student = build_models(spec, plan, device=str(device))
    if plan.method != "none":
        if teacher is None:
            raise TrainError("no teacher weights: set teacher.checkpoint, or fit one with `tasgen train SPEC --role teacher`")
        load_teacher(teacher_model, teacher, spec, num_classes=plan.num_classes, image_size=plan.image_size)
    if init:
        load_initial_weights(student, spec.student, role="student", num_classes=plan.num_classes,
                             image_size=plan.image_size)
    return assemble_student_setup(spec, plan, run_dir, device, teacher_model, sync_batchnorm(student, spec, device),
                                  num_train=num_train)


def assemble_student_setup(
    spec: Spec, plan: Plan, run_dir: Path, device: torch.device, teacher_model: nn.Module, student: nn.Module,
    *, num_train: int | None = None,
) -> Setup:
    """The distillation `Setup` around models that already hold their weights.

    `build_student_setup` loads the weights first; `tasgen bench` passes freshly
    initialised models (timings do not depend on the weights). The method's builder
    (from the registry) wraps the system and makes the objective.

    Args:
        num_train: training images (a method with a memory per image needs it); None:
            a memory of the method's default size (its negatives + 1), enough for timings.
    """
    from tasgen.losses.method import MethodContext
    from tasgen.methods import get_method

    method = get_method(plan.method)
    params = None
    if method.section is not None:
        params = getattr(spec.distill, method.section)
    elif method.params is not None:  # a package's method: its distill.options entry, defaults filled in
        params = method.params.model_validate(spec.distill.options.get(method.name, {}))
    if num_train is None and params is not None and hasattr(params, "negatives"):
        num_train = int(params.negatives) + 1
    context = MethodContext(plan=plan, params=params, feature_dims=_feature_dims(plan),
                            num_classes=plan.num_classes, num_train=num_train)
    parts = method.builder()(build_system(plan, teacher_model, student), context)
    reserved = {"student", "teacher", "ema"} & set(parts.modules)
    if reserved:
        raise ValueError(f"method {plan.method!r} names a module {sorted(reserved)}: those prefixes are tasgen's")
    trainable = nn.ModuleDict({"student": student, **parts.modules})
    optimised = {id(p) for p in trainable.parameters()}
    if any(id(p) in optimised for p in teacher_model.parameters()):
        raise RuntimeError("bug: a teacher parameter would be optimised")
    return Setup(
        role="student", spec=spec, plan=plan, run_dir=run_dir, key=plan.hash,
        system=parts.system.to(device), objective=parts.objective.to(device), optimised=trainable,
        trained_model=student, epochs=spec.train.epochs, device=device, uses_teacher=plan.method != "none",
    )


def sync_batchnorm(model: nn.Module, spec: Spec, device: torch.device) -> nn.Module:
    """``model`` with SyncBatchNorm layers when ``train.sync_bn`` is on and the run is distributed.

    Converted before the system is assembled: the stage views hold some BN layers
    directly (a ResNet's ``bn1`` is a stem part), so a later conversion would miss them.

    Raises:
        TrainError: SyncBN asked for on the CPU (PyTorch has no CPU kernel for it).
    """
    from .dist import world_size

    if not spec.train.sync_bn or world_size() == 1:
        return model
    if device.type != "cuda":
        raise TrainError(
            "train.sync_bn needs CUDA: PyTorch's SyncBatchNorm has no CPU kernel. "
            "Set train.sync_bn=false for CPU runs (BN statistics are then averaged over ranks each epoch)."
        )
    # timm's converter: it keeps the activation of timm's BatchNormAct2d (ConvNormAct), torch's drops it.
    return timm.layers.convert_sync_batchnorm(model)


def _feature_dims(plan: Plan) -> dict[str, int]:
    return {role: plan.feature_width(role) for role in ("teacher", "student", "assistant")}


def load_trainable(trainable: nn.ModuleDict, parts: Mapping[str, Mapping[str, torch.Tensor]], source: str) -> None:
    """Fill every part of ``trainable`` from a checkpoint's weights (all checked before any copy).

    Raises:
        CheckpointError: a part is missing or does not fit.
    """
    missing = [name for name in trainable if name not in parts]
    if missing:
        raise CheckpointError(f"{source} lacks the {', '.join(missing)} weights of this run")
    for name, module in trainable.items():
        check_fits(module, parts[name], source, name)
    for name, module in trainable.items():
        module.load_state_dict(parts[name])


def restore_run(run_dir: str | Path, checkpoint: str = "best", device: torch.device | str | None = None) -> tuple[Setup, dict]:
    """Rebuild a finished (or interrupted) run from its folder, with trained weights.

    Reads ``spec.yaml`` (through the spec loader, so a tampered file gets a located
    error), ``plan.json`` and the ``best`` (default) or ``last`` checkpoint, falling back
    to the other one when it is absent; the checkpoint is verified against its manifest.

    Returns:
        ``(setup, state)``: the setup in eval mode and the checkpoint's training state.

    Raises:
        TrainError: the folder is not a tasgen run, or the teacher's weights are gone.
        SpecError: its spec.yaml does not load.
        CheckpointError: a checkpoint file is corrupt or fails its integrity check.
    """
    from tasgen.spec.load import load_run_spec

    from .dist import default_device
    from .run_folder import RunFolder

    folder = Path(run_dir)
    device = torch.device(device) if device is not None else default_device()
    run = RunFolder(folder)
    spec_file, plan_file = run.spec_file, run.plan_file
    if not spec_file.is_file() or not plan_file.is_file():
        raise TrainError(f"{folder} is not a tasgen run folder (it needs spec.yaml and plan.json)")
    spec = load_run_spec(spec_file).spec
    try:
        plan = Plan.from_json(plan_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise TrainError(f"{plan_file} is not a tasgen plan ({_one_line(exc)}); the run folder was altered") from None
    found = run.checkpoint(checkpoint)
    parts, state = load_checkpoint(found)
    if state.get("role") == "teacher":
        setup = build_teacher_setup(spec, plan, folder.parent, device, init=False)
    else:
        base = folder
        source = teacher_source(spec, base, plan.num_classes) if plan.method != "none" else None
        if plan.method != "none" and source is None:
            raise TrainError(
                f"the teacher's weights of {folder} are gone (no teacher.checkpoint, no {base}/teacher.safetensors, "
                "and the teacher store holds no fit of its teacher: removed with `tasgen teachers --remove`?). "
                "Fit it again with `tasgen train SPEC --role teacher` on the run's spec.yaml"
            )
        # A memory with a slot per training image (crd) is rebuilt at the size it was saved with.
        slots = [t.shape[0] for k, t in parts.get("objective", {}).items() if k.endswith("memory_student")]
        setup = build_student_setup(spec, plan, base, device, source, init=False, num_train=slots[0] if slots else None)
    load_trainable(setup.optimised, parts, str(found))
    setup.system.eval()
    return setup, state


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
