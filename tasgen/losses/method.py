"""The torch side of a method: what its builder receives (`MethodContext`) and returns
(`MethodParts`), and `MethodObjective`, the base of an objective that adds its terms
to cross-entropy on the labels.

A builder is ``build(system, context) -> MethodParts``. ``system`` is the
`DistillationSystem` of the plan (teacher and student; the assistant for tas); the
builder may wrap it (OFA's exit branches, FitNet's regressor) and returns the
objective and the modules it adds, which the optimizer trains and checkpoints save.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel
from torch import nn

from tasgen.plan import Plan

from .classification import cross_entropy

__all__ = ["MethodContext", "MethodObjective", "MethodParts"]

Outputs = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class MethodContext:
    """What a method's builder knows about the run.

    Attributes:
        plan: The plan (stage tables, loss pairs, ``plan.params``: the method's resolved
            hyper-parameters as JSON).
        params: The method's hyper-parameters, validated by its pydantic model (None if it has none).
        feature_dims: Pooled feature width of "teacher", "student" and "assistant".
        num_classes: Classes of the logits.
        num_train: Training images (a memory sized by the dataset needs it); None when unknown.
    """

    plan: Plan
    params: BaseModel | None
    feature_dims: Mapping[str, int]
    num_classes: int
    num_train: int | None = None


@dataclass
class MethodParts:
    """What a builder returns.

    Attributes:
        system: images -> ``{name: (tensor, tensor)}``; "student" must be
            ``(logits, pooled feature)``, and "teacher" too when evaluation asks for it.
        objective: ``(outputs, target[, index]) -> (total, {term: loss})`` with ``term_names``.
        modules: Modules the method adds that the optimizer trains (saved with the run),
            by checkpoint prefix (not "student", "teacher" or "ema").
    """

    system: nn.Module
    objective: nn.Module
    modules: dict[str, nn.Module] = field(default_factory=dict)


class MethodObjective(nn.Module):
    """Cross-entropy on the student's logits plus the terms of `distill` (weighted by the subclass).

    Subclasses set ``terms`` (the names `distill` returns, in order) and implement
    `distill`. One that needs the images' positions in the training set (a memory)
    sets ``needs_index = True``: `forward` then gets ``index``. `set_epoch` is called
    by the trainer before each epoch (1-based), e.g. for a warm-up.

    Args:
        context: The builder's context (CE weight and label smoothing come from its plan).
        terms: Names of the distillation terms.
    """

    needs_index: bool = False

    def __init__(self, context: MethodContext, terms: Sequence[str]) -> None:
        super().__init__()
        self.ce_weight = context.plan.ce_weight
        self.label_smoothing = context.plan.label_smoothing
        self.terms = tuple(terms)
        # The epoch under way, as a tensor, so that a compiled step does not recompile each epoch.
        self.register_buffer("epoch", torch.ones(()), persistent=False)

    @property
    def term_names(self) -> list[str]:
        """Names of the terms `forward` returns, in order."""
        return ["ce"] * (self.ce_weight > 0) + list(self.terms)

    def set_epoch(self, epoch: int) -> None:
        """Record the (1-based) epoch about to run."""
        self.epoch.fill_(float(epoch))

    def distill(self, outputs: Outputs, target: torch.Tensor, index: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The method's weighted terms, named as in ``terms``."""
        raise NotImplementedError

    def forward(
        self, outputs: Outputs, target: torch.Tensor, index: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, terms)``: CE (where weighted) and the method's terms, and their sum."""
        terms: dict[str, torch.Tensor] = {}
        if self.ce_weight > 0:
            smoothing = self.label_smoothing if target.ndim == 1 else 0.0  # mixup's targets are smoothed already
            terms["ce"] = self.ce_weight * cross_entropy(outputs["student"][0].float(), target, smoothing)
        terms |= self.distill(outputs, target, index)
        return functools.reduce(operator.add, terms.values()), terms

    def extra_repr(self) -> str:
        return f"terms={self.term_names}"

