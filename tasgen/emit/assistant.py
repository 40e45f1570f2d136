"""The assistant: local stem and stages -> bridge -> global stages and head."""

from __future__ import annotations

import copy

import torch
from torch import nn

from tasgen.emit.bridge import Bridge
from tasgen.emit.staged import StagedModel
from tasgen.plan import Plan


class Assistant(nn.Module):
    """The TAS assistant, borrowing its stages from the student and the teacher.

    Borrowed stages are held by reference, not registered: the assistant's own
    parameters are the bridge's (plus the teacher copy when the spec fine-tunes
    one), while every borrowed parameter is the very tensor of the student or the
    teacher.

    Args:
        plan: the plan.
        teacher: the teacher model (frozen).
        student: the student model.
    """

    def __init__(self, plan: Plan, teacher: nn.Module, student: nn.Module) -> None:
        super().__init__()
        self.plan = plan
        self.split, self.global_start = plan.split, plan.global_start
        models = {"teacher": teacher, "student": student}
        if plan.teacher_stages == "finetune":
            # A trainable copy, so the real teacher never changes.
            self.teacher_copy = copy.deepcopy(teacher).requires_grad_(True)
            models["teacher"] = self.teacher_copy
        self.local = StagedModel(models[plan.local_role], plan.table(plan.local_role))
        self.glob = StagedModel(models[plan.global_role], plan.table(plan.global_role))
        self.bridge = Bridge(plan.bridge, plan.image_size, self.glob)

    def forward_local(self, x: torch.Tensor) -> torch.Tensor:
        """Local stem and stages 1..split (what the system computes once and shares)."""
        x = self.local.stem(x)
        for i in range(1, self.split + 1):
            x = self.local.stage(i, x)
        return x

    def forward_from_local(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bridge -> global stages -> head, from the local stage output `h`."""
        x = self.bridge(h)
        for i in range(self.global_start, self.glob.num_stages + 1):
            x = self.glob.stage(i, x)
        return self.glob.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images normalised as the local member expects."""
        return self.forward_from_local(self.forward_local(x))[0]
