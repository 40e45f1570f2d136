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
    output; the prefix tokens its bridge may read from the global member (design
    ``depth``), and the values a graph-read global stage reads besides its input
    (``H, W``, class tokens), come from that member's run too. Each model sees its own
    normalisation. The pooled feature is ``plan.feature["pool"]``'s.

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
        pool = str(plan.feature.get("pool", "avg"))
        self.teacher_view = StagedModel(teacher, plan.teacher, pool)
        self.student_view = StagedModel(student, plan.student, pool)
        self.norm_student = Normalize(plan.student.mean, plan.student.std)
        self.same_norm = plan.teacher.mean == plan.student.mean and plan.teacher.std == plan.student.std
        self.norm_teacher = Normalize(plan.teacher.mean, plan.teacher.std)
        # The stages the assistant can take from a run the system does anyway.
        # (Only a fine-tuned teacher copy as the local member must run its own stages.)
        self.share_local = self.assistant is not None and (
            plan.local_role == "student" or plan.teacher_stages == "frozen"
        )
        # The global member's run that supplies the bridge's prefix tokens (design `depth`);
        # a fine-tuned teacher copy is not run by the system, so the assistant runs it.
        self.share_prefix = self.assistant is not None and self.assistant.reads_global and (
            plan.global_role == "student" or plan.teacher_stages == "frozen"
        )
        self.teacher.eval()

    def train(self, mode: bool = True) -> DistillationSystem:
        super().train(mode)
        self.teacher.eval()  # the teacher never changes: BN statistics and dropout stay frozen
        return self

    def _keep(self, role: str) -> tuple[int, ...]:
        """Stage outputs (0 = the stem's) of `role`'s run that the assistant reads."""
        plan, keep = self.plan, []
        if self.share_local and plan.local_role == role:
            keep.append(plan.split)
        if self.share_prefix and plan.global_role == role:
            keep.append(self.assistant.prefix_depth)
        return tuple(keep)

    @staticmethod
    def _run(
        view: StagedModel, x: torch.Tensor, keep: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[int, torch.Tensor]]:
        """Full forward; also returns the outputs of the stages in `keep` (0 = the stem)."""
        x = view.stem(x)
        kept = {0: x} if 0 in keep else {}
        for i in range(1, view.num_stages + 1):
            x = view.stage(i, x)
            if i in keep:
                kept[i] = x
        logits, feat = view.head(x)
        return logits, feat, kept

    def forward(self, images: torch.Tensor) -> Outputs:
        plan = self.plan
        xs = self.norm_student(images)
        xt = xs if self.same_norm else self.norm_teacher(images)
        a = self.assistant
        out: Outputs = {}
        kept: dict[str, dict[int, torch.Tensor]] = {}
        if self.uses_teacher:
            with torch.no_grad():
                t_logits, t_feat, kept["teacher"] = self._run(self.teacher_view, xt, self._keep("teacher"))
            out["teacher"] = (t_logits, t_feat)
        s_logits, s_feat, kept["student"] = self._run(self.student_view, xs, self._keep("student"))
        out["student"] = (s_logits, s_feat)
        if a is not None:
            if self.share_local:
                h = kept[plan.local_role][plan.split]
            else:  # a fine-tuned teacher copy supplies the local stages: run them
                h = a.forward_local(xt)
            prefix = carry = None
            if self.share_prefix:
                prefix, carry = a.global_inputs(kept[plan.global_role][a.prefix_depth])
            elif a.reads_global:  # the global member is a fine-tuned teacher copy
                with torch.no_grad():
                    prefix, carry = a.global_inputs(a.glob.forward_to(xt, a.prefix_depth))
            out["assistant"] = a.forward_from_local(h, prefix, carry)
        return out
