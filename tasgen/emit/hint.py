"""FitNet's hint (Romero et al., ICLR 2015) across architectures: a regressor maps one
student stage onto one teacher stage, aligned as OFA-KD aligns its feature baselines.

Tokens are read as maps (prefix tokens left out), the student map is resampled to the
teacher's grid (average pooling when larger, bilinear when smaller), then a 3x3
convolution + BN (the reference's ConvReg, without its ReLU: a ViT's or an MLP's
features are signed) projects it to the teacher's channels.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import nn

from tasgen.arch.table import Part, token_grid

from .staged import main
from .system import DistillationSystem, Outputs

__all__ = ["HintRegressor", "HintSystem", "as_map"]


def as_map(x: torch.Tensor, part: Part, image_size: int) -> torch.Tensor:
    """A stage output as an NCHW map: NHWC permuted, NLC/NCL tokens (without prefix tokens) laid on their grid."""
    if part.layout == "NCHW":
        return x
    if part.layout == "NHWC":
        return x.permute(0, 3, 1, 2)
    if part.layout == "NCL":
        x = x.transpose(1, 2)
    x = x[:, part.prefix_tokens :]
    tokens = x.shape[1]
    rows, cols = token_grid(image_size, part.reduction)
    if rows * cols != tokens:  # a grid the table did not predict (e.g. another input size): square it
        rows = cols = math.isqrt(tokens)
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], rows, cols)


class HintRegressor(nn.Module):
    """Student stage output -> a map of the teacher stage's channels on the teacher's grid.

    Args:
        student_part: The guided student stage.
        teacher_channels: Channels of the hint (teacher) stage.
        image_size: Input side, for the token grids.
    """

    def __init__(self, student_part: Part, teacher_channels: int, image_size: int) -> None:
        super().__init__()
        self.part = student_part
        self.image_size = image_size
        self.conv = nn.Conv2d(student_part.channels, teacher_channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(teacher_channels)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Regress the student's stage output ``x`` onto a (B, C_teacher, *grid) map."""
        x = as_map(x, self.part, self.image_size)
        if tuple(x.shape[-2:]) != grid:
            if x.shape[-2] >= grid[0] and x.shape[-1] >= grid[1]:
                x = F.adaptive_avg_pool2d(x, grid)
            else:
                x = F.interpolate(x, size=grid, mode="bilinear", align_corners=False)
        return self.bn(self.conv(x))


class HintSystem(nn.Module):
    """A DistillationSystem that also answers ``hint``: (regressed student stage, teacher stage).

    In training (``members`` None) the teacher runs only as far as its hint stage:
    FitNet reads nothing else of it. Evaluation asks for "teacher" by name.

    Args:
        system: A DistillationSystem (teacher and student, no assistant).
        teacher_stage: The hint stage of the teacher (1-based).
        student_stage: The guided stage of the student (1-based).
    """

    def __init__(self, system: DistillationSystem, teacher_stage: int, student_stage: int) -> None:
        super().__init__()
        plan = system.plan
        for role, table, stage in (("teacher", plan.teacher, teacher_stage), ("student", plan.student, student_stage)):
            if not 1 <= stage <= len(table.stages):
                raise ValueError(f"distill.fitnet.{role}_stage is {stage}, but the {role} {table.model} has "
                                 f"stages 1..{len(table.stages)}")
        self.system = system
        self.teacher_stage, self.student_stage = teacher_stage, student_stage
        self.teacher_part = plan.teacher.stages[teacher_stage - 1]
        self.regressor = HintRegressor(plan.student.stages[student_stage - 1], self.teacher_part.channels,
                                       plan.image_size)

    def forward(self, images: torch.Tensor, members: Collection[str] | None = None) -> Outputs:
        """``student``, ``teacher`` when asked by name, and ``hint`` in training."""
        s = self.system
        xs = s.norm_student(images)
        xt = xs if s.same_norm else s.norm_teacher(images)
        training = members is None
        want_teacher = members is not None and "teacher" in members
        out: Outputs = {}
        kept_t: dict[int, torch.Tensor] = {}
        if training or want_teacher:
            keep = (self.teacher_stage,) if training else ()
            with torch.no_grad():
                t_logits, t_feat, kept_t = s._run(s.teacher_view, xt, keep, full=want_teacher)
            if want_teacher:
                out["teacher"] = (t_logits, t_feat)
        s_logits, s_feat, kept_s = s._run(s.student_view, xs, (self.student_stage,) if training else ())
        out["student"] = (s_logits, s_feat)
        if training:
            target = as_map(main(kept_t[self.teacher_stage]), self.teacher_part, s.plan.image_size)
            learner = self.regressor(main(kept_s[self.student_stage]), tuple(target.shape[-2:]))
            out["hint"] = (learner, target)
        return out
