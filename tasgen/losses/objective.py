"""The training objective of a run, built from the plan's `Losses`.

TAS (tas.md):  L = CE(p_S, y) + L(K_T, K_S) + L(K_T, K_A) + L(K_A, K_S),
with L(K_i, K_j) = w_f * InfoNCE(f_j -> f_i) + w_l * logit_loss(p_i -> p_j).

Each pair reads `target -> learner`. The target side is detached at the backbone
output: the target model gets no gradient from the pair, while the target's
projection head still learns, so both heads can meet in the common space (a frozen
random head on the teacher side would fix the space for everyone).

Which pairs a method uses, and with which weights, is decided once, by
`tasgen.planner.plan_losses`; this module only computes them.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping

import torch
import torch.distributed as tdist
from torch import nn

from tasgen.plan import Losses, LossPair

from .classification import cross_entropy
from .info_nce import info_nce
from .kd import kd_loss
from .logit_temperature import CONFIDENT_TEMPERATURE, choose_logit_temperature
from .ofa import ofa_loss
from .projector import FeatureProjector
from .temperature import LearnableTemperature

__all__ = ["MODEL_ROLES", "OFAObjective", "TASObjective", "gather_batch"]

MODEL_ROLES = ("teacher", "assistant", "student")
ModelOutputs = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


def gather_batch(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every process's ``x`` concatenated along dim 0 in rank order, and where this process's rows start.

    InfoNCE's global negatives. Only this process's rows carry gradient; the other
    processes' rows are constants (each process differentiates its own part). Every
    process must pass the same shape, which the training loader guarantees (it drops
    the last, incomplete batch). In one process this returns ``(x, 0)``.
    """
    if not (tdist.is_available() and tdist.is_initialized()):
        return x, 0
    parts = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
    tdist.all_gather(parts, x.detach().contiguous())
    me = tdist.get_rank()
    parts[me] = x
    return torch.cat(parts), me * x.shape[0]


class TASObjective(nn.Module):
    """CE on the student plus the distillation pairs of ``losses`` (methods tas, kd and none).

    Only terms with a non-zero weight are built and computed. `forward` has no
    data-dependent control flow, so it compiles with `fullgraph=True`. With
    ``feature.negatives: global`` the keys of InfoNCE are gathered from every
    process under DDP (a no-op in one process).

    Args:
        losses: The run's objective (`Plan` is one; `plan_losses(spec.distill)` gives one).
        feature_dims: Pooled feature width per model ('teacher', 'assistant', 'student');
            needed for every model that takes part in a feature term.
        num_classes: Number of classes of the logits.
    """

    def __init__(self, losses: Losses, feature_dims: Mapping[str, int], num_classes: int) -> None:
        super().__init__()
        if losses.method == "ofa":
            raise NotImplementedError("distill.method 'ofa' trains exit branches: its objective is OFAObjective")
        self.method = losses.method
        self.num_classes = num_classes
        self.ce_weight = losses.ce_weight
        self.label_smoothing = losses.label_smoothing
        self.logit_loss = losses.logits["loss"]
        self.ofa_eps = float(losses.logits.get("eps", 1.0))  # method kd has no eps (its loss is not OFA)
        # kd's temperature auto is chosen from the teacher when training starts (`set_teacher_confidence`);
        # until then it is the confident teacher's T 4.
        temperature = losses.logits["temperature"]
        auto = temperature == "auto"
        self.logit_temperature_threshold: float | None = float(losses.logits["threshold"]) if auto else None
        self.logit_temperature = CONFIDENT_TEMPERATURE if auto else float(temperature)
        self.global_negatives = losses.feature["negatives"] == "global"
        self.same_class = str(losses.feature.get("same_class", "negative"))
        self.pairs: tuple[LossPair, ...] = tuple(losses.loss_pairs)
        # The pairs' warm-up (method tas's distill.warmup_epochs): their terms are scaled by min(epoch / w, 1).
        self.warmup_epochs = int(losses.params.get("warmup_epochs", 0)) if losses.method == "tas" else 0
        # The epoch under way, as a tensor, so that a compiled step does not recompile each epoch.
        self.register_buffer("epoch", torch.ones(()), persistent=False)
        if self.ce_weight == 0 and not self.pairs:
            raise ValueError(
                "the objective has no terms: distill.ce.weight is 0 and no pair is active"
            )

        feature_pairs = [p for p in self.pairs if p.feature_weight > 0]
        projected = sorted({m for p in feature_pairs for m in (p.target, p.learner)})
        missing = [m for m in projected if m not in feature_dims]
        if missing:
            raise ValueError(
                f"feature_dims lacks {missing}: InfoNCE terms need the pooled feature width "
                f"of every model they involve (got {sorted(feature_dims)})"
            )
        self.projector = FeatureProjector({m: feature_dims[m] for m in projected}, int(losses.feature["dim"]))
        # One temperature per pair: each pair aligns a different couple of feature spaces.
        self.temperatures = nn.ModuleDict(
            {
                p.name: LearnableTemperature(
                    float(losses.feature["temperature"]), learnable=bool(losses.feature["learnable_temperature"])
                )
                for p in feature_pairs
            }
        )
        roles = {"student"} | {m for p in self.pairs for m in (p.target, p.learner)}
        self.models: tuple[str, ...] = tuple(m for m in MODEL_ROLES if m in roles)

    @property
    def needs_teacher_confidence(self) -> bool:
        """Whether the logit temperature waits for `set_teacher_confidence` (kd with temperature auto)."""
        return self.logit_temperature_threshold is not None and any(p.logit_weight > 0 for p in self.pairs)

    def set_teacher_confidence(self, confidence: float) -> float:
        """Choose the logit temperature from the teacher's confidence (`choose_logit_temperature`); returns it.

        Call it before the first step: a compiled step reads the temperature as a constant.
        """
        if self.logit_temperature_threshold is None:
            raise ValueError("the logit temperature was set in the spec: it is not chosen from the teacher")
        self.logit_temperature = choose_logit_temperature(confidence, self.logit_temperature_threshold)
        return self.logit_temperature

    def set_epoch(self, epoch: int) -> None:
        """Record the (1-based) epoch about to run; the trainer calls it before each epoch."""
        self.epoch.fill_(float(epoch))

    def warmup_factor(self) -> torch.Tensor:
        """The pairs' weight this epoch: min(epoch / warmup_epochs, 1); 1 without a warm-up."""
        if self.warmup_epochs == 0:
            return torch.ones_like(self.epoch)
        return (self.epoch / self.warmup_epochs).clamp(max=1.0)

    def forward(
        self, outputs: ModelOutputs, target: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Compute the weighted terms and their sum.

        Args:
            outputs: `{role: (logits (B, C), pooled features (B, D))}` for every role in
                `self.models`.
            target: Class indices (B,) or soft targets (B, C) from mixup; soft targets
                already carry mixup's label smoothing, so CE does not smooth them again.

        Returns:
            `(total, terms)`: terms maps 'ce', '<pair>.feature', '<pair>.logit' to
            weighted scalar losses (the pairs' times the warm-up factor); total is their sum.
        """
        for role in self.models:
            logits, feats = outputs[role]
            if logits.ndim != 2 or logits.shape[-1] != self.num_classes:
                raise ValueError(
                    f"{role} logits must be (B, {self.num_classes}), got {tuple(logits.shape)}"
                )
            if feats.ndim != 2:
                raise ValueError(
                    f"{role} features must be pooled to (B, D), got {tuple(feats.shape)}"
                )

        terms: dict[str, torch.Tensor] = {}
        if self.ce_weight > 0:
            smoothing = self.label_smoothing if target.ndim == 1 else 0.0
            student_logits = outputs["student"][0].float()
            terms["ce"] = self.ce_weight * cross_entropy(student_logits, target, smoothing)

        query_labels = key_labels = None
        if self.same_class != "negative":
            query_labels = target if target.ndim == 1 else target.argmax(-1)
            key_labels = gather_batch(query_labels)[0] if self.global_negatives else query_labels
        ramp = self.warmup_factor() if self.warmup_epochs else None
        for pair in self.pairs:
            target_logits, target_feats = outputs[pair.target]
            learner_logits, learner_feats = outputs[pair.learner]
            if pair.feature_weight > 0:
                key = self.projector(pair.target, target_feats.detach()).float()
                query = self.projector(pair.learner, learner_feats).float()
                offset = 0
                if self.global_negatives:
                    key, offset = gather_batch(key)
                tau = self.temperatures[pair.name]()
                terms[f"{pair.name}.feature"] = pair.feature_weight * info_nce(
                    query, key, tau, offset, query_labels, key_labels, self.same_class
                )
            if pair.logit_weight > 0:
                teacher = target_logits.detach().float()
                student = learner_logits.float()
                if self.logit_loss == "ofa":
                    loss = ofa_loss(student, teacher, target, self.ofa_eps, self.logit_temperature)
                else:
                    loss = kd_loss(student, teacher, self.logit_temperature)
                terms[f"{pair.name}.logit"] = pair.logit_weight * loss
        if ramp is not None:
            terms = {name: term if name == "ce" else ramp * term for name, term in terms.items()}

        total = functools.reduce(operator.add, terms.values())
        return total, terms

    def extra_repr(self) -> str:
        return f"method={self.method!r}, terms={self.term_names}"

    @property
    def term_names(self) -> list[str]:
        """Names of the terms `forward` returns, in order."""
        names = ["ce"] if self.ce_weight > 0 else []
        for p in self.pairs:
            names += [f"{p.name}.feature"] * (p.feature_weight > 0)
            names += [f"{p.name}.logit"] * (p.logit_weight > 0)
        return names


class OFAObjective(nn.Module):
    """CE on the student, plus OFA from the teacher's logits to every exit and the student.

    The OFA-KD baseline (method ofa), for the outputs of `tasgen.emit.ofa.OFASystem`.
    Terms: ``ce``, ``ofa.exit<i>``, ``ofa.final``. The OFA terms take the weight of the
    plan's teacher -> student pair (no pair: no OFA terms); eps and temperature come
    from ``losses.logits``.

    Args:
        losses: the run's objective (`Plan` is one), of method ofa.
        num_exits: branches on the student (one per stage).
    """

    def __init__(self, losses: Losses, num_exits: int) -> None:
        super().__init__()
        self.ce_weight = losses.ce_weight
        self.label_smoothing = losses.label_smoothing
        self.weight = next((p.logit_weight for p in losses.loss_pairs if p.name == "teacher_student"), 0.0)
        self.eps = float(losses.logits["eps"])
        self.temperature = float(losses.logits["temperature"])
        self.learners = [f"exit{i}" for i in range(1, num_exits + 1)] + ["student"]

    @property
    def term_names(self) -> list[str]:
        """Names of the terms `forward` returns, in order."""
        ofa = [f"ofa.{'final' if n == 'student' else n}" for n in self.learners] if self.weight > 0 else []
        return ["ce", *ofa]

    def forward(self, outputs: ModelOutputs, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, terms)`` for the outputs of an `OFASystem` and class indices or soft targets."""
        smoothing = self.label_smoothing if target.ndim == 1 else 0.0
        terms = {"ce": self.ce_weight * cross_entropy(outputs["student"][0].float(), target, smoothing)}
        if self.weight > 0:
            teacher = outputs["teacher"][0].detach().float()
            for name in self.learners:
                loss = ofa_loss(outputs[name][0].float(), teacher, target, self.eps, self.temperature)
                terms[f"ofa.{'final' if name == 'student' else name}"] = self.weight * loss
        return functools.reduce(operator.add, terms.values()), terms
