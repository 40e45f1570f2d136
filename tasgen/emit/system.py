"""The systems a step runs: the DistillationSystem (teacher, student and assistant in one
forward pass) and `Solo` (one model alone), each normalising its images per model."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
from torch import nn

from tasgen.arch.table import StageTable
from tasgen.emit.assistant import Assistant
from tasgen.emit.feature import head_pass, one_pass_classifier, sample_final_map
from tasgen.emit.staged import StagedModel
from tasgen.plan import Plan

Outputs = dict[str, tuple[torch.Tensor, torch.Tensor]]


class Normalize(nn.Module):
    """(x - mean) / std per channel, for a batch in [0, 1] (float) or 0..255 (uint8).

    Args:
        mean: Per-channel mean in [0, 1] units.
        std: Per-channel standard deviation in [0, 1] units.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        # Constants of the plan, not state: kept out of state_dicts and checkpoints.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a batch (B, C, H, W); uint8 input is scaled by 1/255 first."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


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
        view: StagedModel, x: torch.Tensor, keep: tuple[int, ...], full: bool = True
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, dict[int, torch.Tensor]]:
        """Forward; also returns the outputs of the stages in `keep` (0 = the stem).

        With ``full=False`` it stops after the last stage in `keep` (no head: logits
        and feature are None).
        """
        x = view.stem(x)
        kept = {0: x} if 0 in keep else {}
        last = view.num_stages if full else max(keep, default=0)
        for i in range(1, last + 1):
            x = view.stage(i, x)
            if i in keep:
                kept[i] = x
        if not full:
            return None, None, kept
        logits, feat = view.head(x)
        return logits, feat, kept

    def forward(self, images: torch.Tensor, members: Collection[str] | None = None) -> Outputs:
        """Outputs of every member, or only of `members` (evaluation: a frozen teacher's
        answer is the same every epoch, so it is not recomputed for a student's accuracy).

        The student always runs. Without "teacher" in `members`, the teacher runs only
        as far as the assistant reads its stages; without "assistant", no assistant.
        """
        plan = self.plan
        xs = self.norm_student(images)
        xt = xs if self.same_norm else self.norm_teacher(images)
        a = self.assistant if members is None or "assistant" in members else None
        out: Outputs = {}
        kept: dict[str, dict[int, torch.Tensor]] = {"teacher": {}}
        want_teacher = members is None or "teacher" in members
        teacher_keep = self._keep("teacher") if a is not None else ()
        if self.uses_teacher and (want_teacher or teacher_keep):
            with torch.no_grad():
                t_logits, t_feat, kept["teacher"] = self._run(self.teacher_view, xt, teacher_keep, full=want_teacher)
            if want_teacher:
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


class Solo(nn.Module):
    """One model alone, answering as a system does: ``{"student": (logits, pooled feature)}``.

    Used to fit a teacher with the same loop that distils a student (and to evaluate
    an EMA copy). Its feature is the classifier's input, from the same head pass as
    the logits; no loss reads it.

    Args:
        model: a timm model or a tasgen Backbone.
        table: its stage table (the normalisation it expects, the shape of its final map).
    """

    def __init__(self, model: nn.Module, table: StageTable) -> None:
        super().__init__()
        self.model = model
        self.norm = Normalize(tuple(table.mean), tuple(table.std))
        # A tuple, so that the classifier is not registered a second time as a submodule.
        self._classifier = (one_pass_classifier(model, sample_final_map(model, table)),)

    def forward(self, images: torch.Tensor, members: Collection[str] | None = None) -> Outputs:
        """``{"student": ...}``; `members` is accepted as systems accept it (there is one member)."""
        return {"student": head_pass(self.model, self.model.forward_features(self.norm(images)), self._classifier[0])}
