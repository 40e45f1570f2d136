"""`tasgen.compile`: a spec in, the plan, the DistillationSystem and the objective out.

This is the library face of what `tasgen train` builds before its loop starts: the
same passes (`tasgen.compiler.plan_spec`) and the same assembly
(`tasgen.train.setup.build_student_setup`), so a user's own training loop (plain
PyTorch, Lightning, Accelerate) trains exactly what the CLI would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader

    from tasgen.plan import Plan
    from tasgen.spec.load import LoadedSpec
    from tasgen.spec.schema import Spec

__all__ = ["Compiled", "compile"]


@dataclass
class Compiled:
    """What `compile` returns; unpacks as ``plan, system, objective``.

    Attributes:
        plan: the frozen Plan IR (what ``tasgen plan`` shows).
        system: images in [0, 1], (B, 3, H, W) -> ``{role: (logits, pooled feature)}``;
            the teacher inside it is frozen and runs without gradients.
        objective: ``(outputs, labels) -> (loss, terms)``; labels are class indices
            or mixup's soft targets.
        spec: the validated spec.
        trainable: every module the optimizer should see (student, the assistant's
            own parts, the objective's projection heads); never the teacher.
        device: where the modules live.
    """

    plan: Plan
    system: nn.Module
    objective: nn.Module
    spec: Spec
    trainable: nn.ModuleDict
    device: torch.device

    def __iter__(self) -> Iterator[Any]:
        return iter((self.plan, self.system, self.objective))

    @property
    def student(self) -> nn.Module:
        """The student being distilled (a plain timm model or tasgen Backbone)."""
        return self.trainable["student"]

    def parameters(self) -> Iterator[nn.Parameter]:
        """The parameters to optimise (``torch.optim.AdamW(compiled.parameters(), ...)``)."""
        return (p for p in self.trainable.parameters() if p.requires_grad)

    def loaders(self, *, distributed: bool = False, rank: int = 0, world_size: int = 1) -> tuple[DataLoader, DataLoader]:
        """The spec's train and test loaders, built as the CLI builds them (see `build_datasets` for the
        validation split, which the trainer evaluates too).

        Images come as float tensors in [0, 1]; the system normalises them per model.
        """
        from tasgen.data import build_datasets, build_loaders

        built = build_datasets(self.spec.data)
        return build_loaders(built.train, built.test, self.spec.data, self.spec.seed,
                             distributed=distributed, rank=rank, world_size=world_size)


def compile(  # noqa: A001 - the name says what it does, as torch.compile does
    spec: str | os.PathLike[str] | LoadedSpec,
    overrides: Sequence[str] = (),
    *,
    teacher: nn.Module | None = None,
    student: nn.Module | None = None,
    device: torch.device | str | None = None,
    untrained_teacher: bool = False,
) -> Compiled:
    """Compile a spec into the modules one distillation step needs.

    One step of a user's loop is then::

        loss, terms = objective(system(images), labels)
        loss.backward(); optimizer.step(); optimizer.zero_grad()

    The teacher's weights come from where `tasgen train` takes them:
    ``teacher.checkpoint``, else the teacher store's fit of this teacher (from an
    earlier ``tasgen train``, whatever its run name), else timm's pretrained weights
    (``pretrained: true`` with a head of the right size). The student starts from its
    ``checkpoint:`` / ``pretrained:`` weights, or timm's initialisation.

    A model object given as ``teacher`` or ``student`` (a fine-tuned timm model, or
    one's own module with timm's ``feature_info`` / ``forward_features`` /
    ``forward_head`` / ``forward_intermediates``) is planned and used instead of the spec's model of that role,
    with the weights it holds: its stage table is read from the object itself. The
    object is used, not copied: it moves to ``device``, and a teacher is frozen.

    Args:
        spec: a spec file, or a spec already loaded with `tasgen.spec.load_spec`.
        overrides: ``a.b=value`` strings, as ``--set`` takes them (file specs only).
        teacher: a teacher model object (instead of the spec's teacher and its weights).
        student: a student model object (instead of the spec's student and its weights).
        device: default: this process's GPU, else the CPU.
        untrained_teacher: build even when no teacher weights exist (the teacher keeps
            its random initialisation; useful for smoke tests, useless for distilling).

    With a trained teacher, ``distill.logits.temperature: auto`` of the kd logit loss is
    chosen here as the trainer chooses it (from the teacher's confidence on up to 1,024
    training images); with an untrained one it stays at T 4.

    Returns:
        A `Compiled` (unpacks as ``plan, system, objective``).

    Raises:
        SpecError: the spec is invalid or cannot be planned (located messages).
        ModelReadError: a model object cannot be read as stem + stages + head, or its
            classifier has the wrong number of classes (the message says what to do).
        TrainError: no teacher weights (and ``untrained_teacher`` is off).
        CheckpointError: a checkpoint does not fit its model.
    """
    import torch

    from tasgen.compiler import plan_spec
    from tasgen.spec.load import LoadedSpec, load_spec
    from tasgen.train.dist import default_device
    from tasgen.train.errors import TrainError
    from tasgen.train.setup import (
        assemble_student_setup,
        build_student_setup,
        run_folder,
        sync_batchnorm,
    )
    from tasgen.train.weights import teacher_source

    if isinstance(spec, LoadedSpec):
        if overrides:
            raise ValueError("overrides apply to spec files; load_spec(path, overrides) takes them for a LoadedSpec")
        loaded = spec
    else:
        loaded = load_spec(Path(spec), overrides)
    dev = torch.device(device) if device is not None else default_device()
    resolved, plan = loaded.spec, plan_spec(loaded, models={"teacher": teacher, "student": student})
    run_dir = run_folder(resolved)
    source = teacher_source(resolved, run_dir, plan.num_classes) if plan.method != "none" and teacher is None else None
    if source is None and plan.method != "none" and teacher is None and not untrained_teacher:
        raise TrainError(
            f"no teacher weights for {resolved.name}: set teacher.checkpoint, fit one with "
            f"`tasgen train {loaded.path} --role teacher` (into the teacher store, `tasgen teachers`), "
            "pass a trained model as compile(..., teacher=model), or untrained_teacher=True for a smoke test"
        )
    trained_teacher = plan.method != "none" and (source is not None or teacher is not None)  # not a random one
    if teacher is None and student is None and (source is not None or plan.method == "none"):
        setup = build_student_setup(resolved, plan, run_dir, dev, source)
    else:
        from tasgen.arch.models import create_model
        from tasgen.train.weights import load_initial_weights, load_teacher

        sizes = {"num_classes": plan.num_classes, "image_size": plan.image_size}
        if teacher is None:  # the spec's teacher: its weights, or random ones for a smoke test
            teacher = create_model(resolved.teacher, device=str(dev), **sizes)
            if source is not None:
                load_teacher(teacher, source, resolved, **sizes)
        if student is None:
            student = create_model(resolved.student, device=str(dev), **sizes)
            load_initial_weights(student, resolved.student, role="student", **sizes)
        setup = assemble_student_setup(resolved, plan, run_dir, dev, teacher.to(dev),
                                       sync_batchnorm(student.to(dev), resolved, dev))
    if trained_teacher and getattr(setup.objective, "needs_teacher_confidence", False):
        # kd's temperature auto, chosen as `tasgen train` chooses it: from the teacher on the training images.
        from tasgen.data import build_datasets
        from tasgen.losses.logit_temperature import teacher_confidence

        confidence, _ = teacher_confidence(setup.system, build_datasets(resolved.data).train, dev)
        setup.objective.set_teacher_confidence(confidence)
    return Compiled(plan=plan, system=setup.system, objective=setup.objective, spec=resolved,
                    trainable=setup.optimised, device=dev)
