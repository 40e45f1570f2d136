"""The OFA-KD baseline (Hao et al., NeurIPS 2023): exit branches on the student's stages.

A small branch after each student stage, the last included (OFA-KD's default
stages 1 2 3 4), turns that stage's output into logits; each branch, and the
student's own logits, are pulled toward the teacher's logits with the OFA loss,
next to cross-entropy on the labels.

Simplification (ours): OFA-KD's branches stack a few blocks of the student's kind;
here a branch is one 1x1 conv + BN + ReLU (maps) or a LayerNorm (tokens), then
global pooling (a token stage with a class token reads the class token, as OFA-KD
does for ViT students) and a linear classifier.
"""

from __future__ import annotations

import functools
import operator

import torch
from torch import nn

from tasgen.arch.table import Layout, StageTable
from tasgen.emit.staged import main
from tasgen.emit.system import DistillationSystem, Outputs
from tasgen.losses import cross_entropy, ofa_loss
from tasgen.spec.schema import DistillSpec


class ExitBranch(nn.Module):
    """Stage output -> (logits, pooled feature).

    Args:
        layout: the stage output's layout (NCHW maps, NHWC or NLC tokens).
        channels: its channels.
        num_classes: classes of the logits.
        prefix_tokens: class/register tokens in front of the grid tokens (NLC); when
            there are any, the branch reads the first (the class token).
    """

    def __init__(self, layout: Layout, channels: int, num_classes: int, prefix_tokens: int = 0) -> None:
        super().__init__()
        self.layout = layout
        self.prefix_tokens = prefix_tokens
        if layout == "NCHW":
            self.body: nn.Module = nn.Sequential(
                nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
            )
        else:
            self.body = nn.LayerNorm(channels)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.body(x)
        if self.layout == "NCHW":
            pooled = x.mean((2, 3))
        elif self.layout == "NHWC":
            pooled = x.mean((1, 2))
        else:
            pooled = x[:, 0] if self.prefix_tokens else x.mean(1)
        return self.fc(pooled), pooled


class OFASystem(nn.Module):
    """A DistillationSystem whose student also answers at the exit of each stage.

    ``forward(images)`` returns the system's ``teacher`` and ``student`` outputs plus
    ``exit<i>`` for student stage i = 1..n.

    Args:
        system: a DistillationSystem of method ``ofa`` (teacher and student, no assistant).
    """

    def __init__(self, system: DistillationSystem) -> None:
        super().__init__()
        self.system = system
        table: StageTable = system.plan.student
        self.branches = nn.ModuleList(
            ExitBranch(s.layout, s.channels, system.plan.num_classes, s.prefix_tokens) for s in table.stages
        )

    def forward(self, images: torch.Tensor) -> Outputs:
        s = self.system
        xs = s.norm_student(images)
        xt = xs if s.same_norm else s.norm_teacher(images)
        with torch.no_grad():
            out: Outputs = {"teacher": s.teacher_view.forward(xt)}
        view = s.student_view
        x = view.stem(xs)
        for i in range(1, view.num_stages + 1):
            x = view.stage(i, x)
            out[f"exit{i}"] = self.branches[i - 1](main(x))
        out["student"] = view.head(x)
        return out


class OFAObjective(nn.Module):
    """CE on the student, plus OFA from the teacher's logits to every exit and the student.

    Terms: ``ce``, ``ofa.exit<i>``, ``ofa.final``. The OFA terms take the weight of
    ``distill.pairs.teacher_student.logit_weight``; eps and temperature come from
    ``distill.logits``.

    Args:
        spec: the distill section of the spec.
        num_exits: branches on the student (one per stage).
    """

    def __init__(self, spec: DistillSpec, num_exits: int) -> None:
        super().__init__()
        self.ce_weight = spec.ce.weight
        self.label_smoothing = spec.ce.label_smoothing
        self.weight = spec.pairs.teacher_student.logit_weight if spec.pairs.teacher_student.enabled else 0.0
        self.eps = spec.logits.eps
        self.temperature = spec.logits.temperature
        self.learners = [f"exit{i}" for i in range(1, num_exits + 1)] + ["student"]

    @property
    def term_names(self) -> list[str]:
        """Names of the terms `forward` returns, in order."""
        ofa = [f"ofa.{'final' if n == 'student' else n}" for n in self.learners] if self.weight > 0 else []
        return ["ce", *ofa]

    def forward(self, outputs: Outputs, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, terms)`` for the outputs of an `OFASystem` and class indices or soft targets."""
        smoothing = self.label_smoothing if target.ndim == 1 else 0.0
        terms = {"ce": self.ce_weight * cross_entropy(outputs["student"][0].float(), target, smoothing)}
        if self.weight > 0:
            teacher = outputs["teacher"][0].detach().float()
            for name in self.learners:
                loss = ofa_loss(outputs[name][0].float(), teacher, target, self.eps, self.temperature)
                terms[f"ofa.{'final' if name == 'student' else name}"] = self.weight * loss
        return functools.reduce(operator.add, terms.values()), terms
