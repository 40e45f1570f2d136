"""Parameters and FLOPs of each part of a compiled system (torch.utils.flop_counter)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from tasgen.plan import Plan
from tasgen.spec.schema import Spec


@dataclass(frozen=True)
class PartSummary:
    name: str
    params: int
    trainable: int
    flops: int


def _count(params) -> tuple[int, int]:
    params = list({id(p): p for p in params}.values())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def _flops(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return int(counter.get_total_flops())


def _carry(a, images: torch.Tensor) -> tuple | None:
    """What the assistant's first global stage reads besides the bridge's output, on meta images."""
    if not a.carries:
        return None
    with torch.no_grad():
        return a.global_inputs(a.glob.forward_to(images, a.prefix_depth))[1]


def build_meta_system(spec: Spec, plan: Plan):
    """The system on the meta device: exact shapes and counts, no memory."""
    from tasgen.arch.models import create_model
    from tasgen.emit.system import DistillationSystem

    teacher, student = (create_model(getattr(spec, role), num_classes=plan.num_classes, image_size=plan.image_size,
                                     device="meta") for role in ("teacher", "student"))
    with torch.device("meta"):
        return DistillationSystem(plan, teacher, student).eval()


def part_costs(spec: Spec, plan: Plan) -> dict[str, tuple[int, int]]:
    """Exact (parameters, forward FLOPs at batch 1) of each assistant part, from the built modules."""
    system = build_meta_system(spec, plan)
    a = system.assistant
    x = torch.empty(1, plan.table(plan.local_role).input_size[0], plan.image_size, plan.image_size, device="meta")
    carry = _carry(a, x)
    out: dict[str, tuple[int, int]] = {}
    for part in plan.assistant:
        view = a.local if part.source == plan.local_role else a.glob
        if part.name == "bridge":
            # Design `depth` reads prefix tokens the system has computed anyway: no FLOPs of its own.
            params, fn = _count(a.bridge.parameters())[0], lambda t: a.bridge(t, a.bridge.stand_in_prefix(t))
        elif part.name == "stem":
            params, fn = _count(p for m in view.stem_modules() for p in m.parameters())[0], view.stem
        elif part.name == "head":
            body = view.stem_modules() + [m for i in range(1, view.num_stages + 1) for m in view.stage_modules(i)]
            body_ids = {id(p) for m in body for p in m.parameters()}
            params = sum(p.numel() for p in view.model.parameters() if id(p) not in body_ids)
            fn = view.head
        else:
            index = part.source_stage
            params = _count(p for m in view.stage_modules(index) for p in m.parameters())[0]
            fn = lambda t, view=view, index=index: view.stage(index, t)  # noqa: E731
        flops = _flops(fn, x)
        with torch.no_grad():
            x = fn(x)
        if part.name == "bridge" and carry:
            x = (x, *carry)  # what the global stage reads besides its input (H and W, class tokens)
        out[part.name] = (params, flops)
    return out


def system_costs(spec: Spec, plan: Plan) -> list[PartSummary]:
    """Parameters and forward FLOPs (batch 1) of teacher, student, assistant parts and the system."""
    system = build_meta_system(spec, plan)
    x = torch.empty(1, plan.table("student").input_size[0], plan.image_size, plan.image_size, device="meta")
    rows = []
    for role in ("teacher", "student"):
        view = system.teacher_view if role == "teacher" else system.student_view
        total, trainable = _count(view.model.parameters())
        rows.append(PartSummary(f"{role} ({plan.table(role).model})", total, trainable, _flops(view.forward, x)))
    a = system.assistant
    if a is not None:
        h = torch.no_grad()(a.forward_local)(x)
        local = a.local.stem_modules() + [m for i in range(1, plan.split + 1) for m in a.local.stage_modules(i)]
        total, trainable = _count(p for m in local for p in m.parameters())
        rows.append(PartSummary(f"assistant: {plan.local_role} stem + stages 1-{plan.split} "
                                f"({plan.ownership(plan.local_role)})",
                                total, trainable, _flops(a.forward_local, x)))
        total, trainable = _count(a.bridge.parameters())
        bridge = lambda t: a.bridge(t, a.bridge.stand_in_prefix(t))  # noqa: E731
        rows.append(PartSummary(f"assistant: bridge ({plan.ownership('new')})", total, trainable, _flops(bridge, h)))
        g = a.glob
        hb = torch.no_grad()(bridge)(h)
        mods = [m for i in range(plan.global_start, g.num_stages + 1) for m in g.stage_modules(i)]
        total, trainable = _count(p for m in mods for p in m.parameters())

        carry = _carry(a, x)

        def rest(t):
            if carry:
                t = (t, *carry)
            for i in range(plan.global_start, g.num_stages + 1):
                t = g.stage(i, t)
            return g.head(t)

        span = str(g.num_stages) if plan.global_start == g.num_stages else f"{plan.global_start}-{g.num_stages}"
        rows.append(PartSummary(f"assistant: {plan.global_role} stages {span} + head "
                                f"({plan.ownership(plan.global_role)})",
                                total, trainable, _flops(rest, hb)))
    total, trainable = _count(system.parameters())
    rows.append(PartSummary("system (one step forward)", total, trainable, _flops(system, x)))
    return rows
