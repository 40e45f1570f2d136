"""Builders of tasgen's own methods (imported when a run is built; registered in `tasgen.methods.builtin`)."""

from __future__ import annotations

from tasgen.emit.hint import HintSystem
from tasgen.emit.ofa import OFASystem
from tasgen.emit.system import DistillationSystem

from .baselines import CRDObjective, DISTObjective, DKDObjective, FitNetObjective
from .method import MethodContext, MethodParts
from .objective import OFAObjective, TASObjective


def build_tas(system: DistillationSystem, context: MethodContext) -> MethodParts:
    """TAS, and kd and none (the same objective with other pairs): the assistant and TASObjective."""
    objective = TASObjective(context.plan, context.feature_dims, context.num_classes)
    modules = {"assistant": system.assistant} if system.assistant is not None else {}
    if objective.state_dict():
        modules["objective"] = objective  # projection heads, learnable temperatures
    return MethodParts(system, objective, modules)


build_kd = build_none = build_tas


def build_ofa(system: DistillationSystem, context: MethodContext) -> MethodParts:
    """OFA-KD: exit branches after every student stage, OFA from the teacher to each."""
    wrapped = OFASystem(system)
    return MethodParts(wrapped, OFAObjective(context.plan, len(wrapped.branches)), {"branches": wrapped.branches})


def build_fitnet(system: DistillationSystem, context: MethodContext) -> MethodParts:
    """FitNet: a regressor from the guided student stage to the hint (teacher) stage."""
    params = context.plan.params
    wrapped = HintSystem(system, int(params["teacher_stage"]), int(params["student_stage"]))
    return MethodParts(wrapped, FitNetObjective(context), {"hint": wrapped.regressor})


def build_crd(system: DistillationSystem, context: MethodContext) -> MethodParts:
    """CRD: embedding heads and the contrast memory live in the objective."""
    objective = CRDObjective(context)
    return MethodParts(system, objective, {"objective": objective})


def build_dkd(system: DistillationSystem, context: MethodContext) -> MethodParts:
    """DKD on the teacher's and the student's logits."""
    return MethodParts(system, DKDObjective(context))


def build_dist(system: DistillationSystem, context: MethodContext) -> MethodParts:
    """DIST on the teacher's and the student's logits."""
    return MethodParts(system, DISTObjective(context))
