"""The OFA-KD baseline's system (Hao et al., NeurIPS 2023): exit branches on the student's stages.

A small branch after each student stage, the last included (OFA-KD's default
stages 1 2 3 4), turns that stage's output into logits; each branch, and the
student's own logits, are pulled toward the teacher's logits with the OFA loss,
next to cross-entropy on the labels (`tasgen.losses.OFAObjective`).

Simplification (ours): OFA-KD's branches stack a few blocks of the student's kind;
here a branch is one 1x1 conv + BN + ReLU (maps) or a LayerNorm (tokens), then
global pooling (a token stage with a class token reads the class token, as OFA-KD
does for ViT students) and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from tasgen.arch.table import Layout, StageTable

from .staged import main
from .system import DistillationSystem, Outputs


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

    def forward(self, images: torch.Tensor, members: Collection[str] | None = None) -> Outputs:
        """Every output, or the student's and those in `members` (see `DistillationSystem.forward`)."""
        s = self.system
        xs = s.norm_student(images)
        out: Outputs = {}
        if members is None or "teacher" in members:
            xt = xs if s.same_norm else s.norm_teacher(images)
            with torch.no_grad():
                out["teacher"] = s.teacher_view.forward(xt)
        view = s.student_view
        x = view.stem(xs)
        for i in range(1, view.num_stages + 1):
            x = view.stage(i, x)
            if members is None or f"exit{i}" in members:
                out[f"exit{i}"] = self.branches[i - 1](main(x))
        out["student"] = view.head(x)
        return out
