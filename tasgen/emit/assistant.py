"""The assistant: local stem and stages -> bridge -> global stages and head."""

from __future__ import annotations

import copy

import torch
from torch import nn

from tasgen.emit.bridge import Bridge
from tasgen.emit.staged import StagedModel, State, main
from tasgen.plan import Plan


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``x`` unchanged (to the last bit), with its gradient multiplied by ``scale``."""
    if scale == 1:
        return x
    if scale == 0:
        return x.detach()
    frozen = x.detach()
    return frozen + scale * (x - frozen)


class _GlobalPath(nn.Module):
    """The assistant's path after the local stages, as a module whose only registered
    child is the student: `torch.func.functional_call` can then run it with the
    student's parameters replaced by gradient-scaled views of themselves."""

    def __init__(self, assistant: Assistant, student: nn.Module) -> None:
        super().__init__()
        self.student = student
        self._assistant = (assistant,)  # a tuple: not registered (the assistant owns this path)

    def forward(self, h: State, prefix: torch.Tensor | None, carry: tuple | None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._assistant[0].global_path(h, prefix, carry)


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
        pool = str(plan.feature.get("pool", "avg"))
        self.plan = plan
        self.split, self.global_start = plan.split, plan.global_start
        models = {"teacher": teacher, "student": student}
        if plan.teacher_stages == "finetune":
            # A trainable copy, so the real teacher never changes.
            self.teacher_copy = copy.deepcopy(teacher).requires_grad_(True)
            models["teacher"] = self.teacher_copy
        self.local = StagedModel(models[plan.local_role], plan.table(plan.local_role), pool)
        self.glob = StagedModel(models[plan.global_role], plan.table(plan.global_role), pool)
        self.bridge = Bridge(plan.bridge, plan.image_size, self.glob)
        # How much of the assistant's gradient reaches the student stages it borrows (plan.shared_grad).
        self.shared_grad = float(plan.shared_grad)
        self._scale_local = plan.local_role == "student" and self.shared_grad != 1
        self._scaled_path = (
            (_GlobalPath(self, student),) if plan.global_role == "student" and self.shared_grad != 1 else None
        )
        # Recompute the stages after the bridge in backward instead of keeping their
        # activations (plan.recompute): only where they are the frozen teacher's, which runs
        # in eval mode (no batch-norm statistics to update twice, no dropout).
        self.recompute = plan.recompute and plan.global_role == "teacher" and plan.teacher_stages == "frozen"
        # Prefix tokens of design `depth`, and the values a graph-read global stage
        # reads besides its main input (H and W, class tokens): the global member's
        # own, as they enter stage global_start in its forward pass of the same images.
        self.prefix_depth = self.global_start - 1
        self.carries = self.glob.carries(self.global_start)
        local_t, glob_t = plan.table(plan.local_role), plan.table(plan.global_role)
        # Local-normalised images -> global-normalised ones (x * s_l + m_l - m_g) / s_g, for `forward`.
        scale = [sl / sg for sl, sg in zip(local_t.std, glob_t.std, strict=True)]
        shift = [(ml - mg) / sg for ml, mg, sg in zip(local_t.mean, glob_t.mean, glob_t.std, strict=True)]
        self.register_buffer("renorm_scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("renorm_shift", torch.tensor(shift).view(1, -1, 1, 1), persistent=False)

    def standalone_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights of the standalone assistant `tasgen emit` writes, borrowed stages included.

        ``state_dict()`` holds only the assistant's own parameters (the bridge, a
        fine-tuned teacher copy); the emitted ``Assistant`` owns whole copies of both
        members, so its keys are ``local.*`` (the local member), ``glob.*`` (the global
        member) and ``bridge.*``. ``Assistant().load_state_dict(...)`` of the emitted
        file takes this as is.
        """
        state = {f"local.{k}": v for k, v in self.local.model.state_dict().items()}
        state |= {f"glob.{k}": v for k, v in self.glob.model.state_dict().items()}
        state |= {f"bridge.{k}": v for k, v in self.bridge.state_dict().items()}
        return state

    @property
    def reads_global(self) -> bool:
        """Whether the bridge's side needs the global member's state at depth ``prefix_depth``."""
        return self.bridge.needs_prefix or self.carries

    def forward_local(self, x: torch.Tensor) -> State:
        """Local stem and stages 1..split (what the system computes once and shares)."""
        x = self.local.stem(x)
        for i in range(1, self.split + 1):
            x = self.local.stage(i, x)
        return x

    def prefix_tokens(self, global_input: torch.Tensor) -> torch.Tensor:
        """The global member's prefix tokens at the bridge's depth, detached (design `depth`).

        Args:
            global_input: Its stage ``prefix_depth`` output (the stem's when 0).
        """
        return main(global_input)[:, : self.plan.bridge.out_prefix_tokens].detach()

    def global_inputs(self, global_state: State) -> tuple[torch.Tensor | None, tuple | None]:
        """(prefix tokens, carried values) the assistant reads from the global member's state.

        Args:
            global_state: Its stage ``prefix_depth`` output (the stem's when 0).
        """
        prefix = self.prefix_tokens(global_state) if self.bridge.needs_prefix else None
        carry = None
        if self.carries:
            carry = tuple(v.detach() if isinstance(v, torch.Tensor) else v for v in global_state[1:])
        return prefix, carry

    def forward_from_local(
        self, h: State, prefix: torch.Tensor | None = None, carry: tuple | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bridge -> global stages -> head, from the local stage output `h`.

        Args:
            h: The local member's stage ``split`` output.
            prefix: The global member's prefix tokens at the bridge's depth, when
                ``bridge.needs_prefix`` (see `prefix_tokens`).
            carry: What the global stage ``global_start`` reads besides its main
                input, when ``carries`` (see `global_inputs`).
        """
        if self._scale_local:
            h = tuple(scale_grad(v, self.shared_grad) if isinstance(v, torch.Tensor) else v for v in h) \
                if isinstance(h, tuple) else scale_grad(h, self.shared_grad)
        if self._scaled_path is not None:
            path = self._scaled_path[0]
            params = {f"student.{n}": scale_grad(p, self.shared_grad) for n, p in path.student.named_parameters()}
            return torch.func.functional_call(path, params, (h, prefix, carry), strict=False)
        return self.global_path(h, prefix, carry)

    def global_path(
        self, h: State, prefix: torch.Tensor | None = None, carry: tuple | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bridge -> global stages -> head, from the local stage output `h` (no gradient scaling)."""
        x: State = self.bridge(main(h), prefix)
        if carry:
            x = (x, *carry)
        recompute = self.recompute and torch.is_grad_enabled()
        for i in range(self.global_start, self.glob.num_stages + 1):
            x = self.glob.stage(i, x, recompute)
        return self.glob.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images normalised as the local member expects."""
        prefix = carry = None
        if self.reads_global:
            with torch.no_grad():
                g = self.glob.forward_to(x * self.renorm_scale + self.renorm_shift, self.prefix_depth)
            prefix, carry = self.global_inputs(g)
        return self.forward_from_local(self.forward_local(x), prefix, carry)[0]
