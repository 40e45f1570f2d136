"""The DistillationSystem: teacher, student and assistant in one forward pass."""

from __future__ import annotations

import torch
from torch import nn

from tasgen.data.transforms import Normalize
from tasgen.emit.assistant import Assistant
from tasgen.emit.staged import StagedModel
from tasgen.plan import Plan

Outputs = dict[str, tuple[torch.Tensor, torch.Tensor]]


class DistillationSystem(nn.Module):
    """Everything a training step runs, as one module that torch.compile compiles whole.

    ``forward(images)`` takes images in [0, 1] and returns ``{name: (logits,
    pooled_feature)}`` for "student", and for "teacher" and "assistant" when the
    method uses them. The teacher runs under no_grad; the stages the assistant
    shares with the local member run once, and the assistant starts from their
    output. Each model sees its own normalisation.

    Args:
        plan: the plan.
        teacher: the teacher model; frozen, and kept in eval mode.
        student: the student model.
    """

    def __init__(self, plan: Plan, teacher: nn.Module, student: nn.Module) -> None:
        super().__init__()
        self.plan = plan
        self.teacher = teacher.requires_grad_(False)
        self.student = student
        self.uses_teacher = plan.method != "none"
        self.assistant = Assistant(plan, teacher, student) if plan.method == "tas" else None
        self.teacher_view = StagedModel(teacher, plan.teacher)
        self.student_view = StagedModel(student, plan.student)
        self.norm_student = Normalize(plan.student.mean, plan.student.std)
        self.same_norm = plan.teacher.mean == plan.student.mean and plan.teacher.std == plan.student.std
        self.norm_teacher = Normalize(plan.teacher.mean, plan.teacher.std)
        # The stages the assistant can take from a run the system does anyway.
        # (Only a fine-tuned teacher copy as the local member must run its own stages.)
        self.share_local = self.assistant is not None and (
            plan.local_role == "student" or plan.teacher_stages == "frozen"
        )
        self.teacher.eval()

    def train(self, mode: bool = True) -> DistillationSystem:
        super().train(mode)
        self.teacher.eval()  # the teacher never changes: BN statistics and dropout stay frozen
        return self

    def _run(self, view: StagedModel, x: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Full forward; also returns the output of stage `keep` (0 = none)."""
        kept = None
        x = view.stem(x)
        for i in range(1, view.num_stages + 1):
            x = view.stage(i, x)
            if i == keep:
                kept = x
        logits, feat = view.head(x)
        return logits, feat, kept

    def forward(self, images: torch.Tensor) -> Outputs:
        plan = self.plan
        xs = self.norm_student(images)
        xt = xs if self.same_norm else self.norm_teacher(images)
        a = self.assistant
        keep_t = plan.split if self.share_local and plan.local_role == "teacher" else 0
        keep_s = plan.split if self.share_local and plan.local_role == "student" else 0
        out: Outputs = {}
        if self.uses_teacher:
            with torch.no_grad():
                t_logits, t_feat, t_kept = self._run(self.teacher_view, xt, keep_t)
            out["teacher"] = (t_logits, t_feat)
        s_logits, s_feat, s_kept = self._run(self.student_view, xs, keep_s)
        out["student"] = (s_logits, s_feat)
        if a is not None:
            if keep_s:
                h = s_kept
            elif keep_t:
                h = t_kept
            else:  # a fine-tuned teacher copy supplies the local stages: run them
                h = a.forward_local(xt)
            out["assistant"] = a.forward_from_local(h)
        return out
