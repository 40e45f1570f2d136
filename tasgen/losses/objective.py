"""The training objective of a run, assembled from `DistillSpec`.

TAS (tas.md):  L = CE(p_S, y) + L(K_T, K_S) + L(K_T, K_A) + L(K_A, K_S),
with L(K_i, K_j) = w_f * InfoNCE(f_j -> f_i) + w_l * logit_loss(p_i -> p_j).

Each pair reads `target -> learner`. The target side is detached at the backbone
output: the target model gets no gradient from the pair, while the target's
projection head still learns, so both heads can meet in the common space (a frozen
random head on the teacher side would fix the space for everyone).

A method is a list of `DistillPair`s (see `_METHOD_PAIRS`); adding a method means
adding one function there.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tasgen.spec.schema import DistillSpec

from .classification import cross_entropy
from .info_nce import info_nce
from .kd import kd_loss
from .ofa import ofa_loss
from .projector import FeatureProjector
from .temperature import LearnableTemperature

__all__ = ["MODEL_ROLES", "DistillPair", "TASObjective", "distill_pairs"]

MODEL_ROLES = ("teacher", "assistant", "student")
ModelOutputs = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class DistillPair:
    """One `target -> learner` distillation pair and the weights of its two terms.

    Attributes:
        name: Term prefix, e.g. 'teacher_student'.
        target: Model whose knowledge is transferred (detached).
        learner: Model that learns from it.
        feature_weight: Weight of InfoNCE on projected pooled features; 0 = no term.
        logit_weight: Weight of the logit loss; 0 = no term.
        logit_loss: 'ofa' or 'kd'.
    """

    name: str
    target: str
    learner: str
    feature_weight: float
    logit_weight: float
    logit_loss: Literal["ofa", "kd"]


def _tas_pairs(spec: DistillSpec) -> list[DistillPair]:
    use_features = spec.feature.loss != "none"
    pairs = []
    for name in ("teacher_student", "teacher_assistant", "assistant_student"):
        pair = getattr(spec.pairs, name)
        if not pair.enabled:
            continue
        target, learner = name.split("_")
        pairs.append(
            DistillPair(
                name=name,
                target=target,
                learner=learner,
                feature_weight=pair.feature_weight if use_features else 0.0,
                logit_weight=pair.logit_weight,
                logit_loss=spec.logits.loss,
            )
        )
    return pairs


def _kd_pairs(spec: DistillSpec) -> list[DistillPair]:
    if not spec.pairs.teacher_student.enabled:
        return []
    # Hinton KD is logit-only, with its own recipe (distill.kd), whatever the TAS settings say.
    return [DistillPair("teacher_student", "teacher", "student", 0.0, spec.kd.kd_weight, "kd")]


def _no_pairs(spec: DistillSpec) -> list[DistillPair]:
    return []


_METHOD_PAIRS: dict[str, Callable[[DistillSpec], list[DistillPair]]] = {
    "tas": _tas_pairs,
    "kd": _kd_pairs,
    "none": _no_pairs,
    # "ofa": multi-branch OFA-KD needs stage outputs; it gets its own builder here.
}


def distill_pairs(spec: DistillSpec) -> list[DistillPair]:
    """The pairs of `spec.method` that contribute at least one term.

    Args:
        spec: The distillation section of a spec.

    Returns:
        Pairs in the order tas.md lists them; disabled or all-zero pairs are left out.

    Raises:
        NotImplementedError: For a method without a pair builder yet.
    """
    try:
        build = _METHOD_PAIRS[spec.method]
    except KeyError:
        raise NotImplementedError(
            f"distill.method '{spec.method}' has no objective yet; "
            f"available: {', '.join(sorted(_METHOD_PAIRS))}"
        ) from None
    return [p for p in build(spec) if p.feature_weight > 0 or p.logit_weight > 0]


class TASObjective(nn.Module):
    """CE on the student plus the distillation terms of `spec.method` (tas, kd or none).

    Only terms with a non-zero weight are built and computed. `forward` has no
    data-dependent control flow, so it compiles with `fullgraph=True`. Method kd
    takes its CE weight and temperature from ``spec.kd``. With
    ``feature.negatives: global`` the keys of InfoNCE are gathered from every
    process under DDP (a no-op in one process).

    Args:
        spec: The distillation section of a spec.
        feature_dims: Pooled feature width per model ('teacher', 'assistant', 'student');
            needed for every model that takes part in a feature term.
        num_classes: Number of classes of the logits.
    """

    def __init__(
        self, spec: DistillSpec, feature_dims: Mapping[str, int], num_classes: int
    ) -> None:
        super().__init__()
        self.method = spec.method
        self.num_classes = num_classes
        kd = spec.method == "kd"
        self.ce_weight = spec.kd.ce_weight if kd else spec.ce.weight
        self.label_smoothing = spec.ce.label_smoothing
        self.ofa_eps = spec.logits.eps
        self.logit_temperature = spec.kd.temperature if kd else spec.logits.temperature
        self.global_negatives = spec.feature.negatives == "global"
        # Imported here, not at the top: tasgen.train imports this module.
        from tasgen.train.dist import gather_batch

        self._gather = gather_batch
        self.pairs: tuple[DistillPair, ...] = tuple(distill_pairs(spec))
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
        self.projector = FeatureProjector({m: feature_dims[m] for m in projected}, spec.feature.dim)
        # One temperature per pair: each pair aligns a different couple of feature spaces.
        self.temperatures = nn.ModuleDict(
            {
                p.name: LearnableTemperature(
                    spec.feature.temperature, learnable=spec.feature.learnable_temperature
                )
                for p in feature_pairs
            }
        )
        roles = {"student"} | {m for p in self.pairs for m in (p.target, p.learner)}
        self.models: tuple[str, ...] = tuple(m for m in MODEL_ROLES if m in roles)

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
            weighted scalar losses; total is their sum.
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

        for pair in self.pairs:
            target_logits, target_feats = outputs[pair.target]
            learner_logits, learner_feats = outputs[pair.learner]
            if pair.feature_weight > 0:
                key = self.projector(pair.target, target_feats.detach()).float()
                query = self.projector(pair.learner, learner_feats).float()
                offset = 0
                if self.global_negatives:
                    key, offset = self._gather(key)
                tau = self.temperatures[pair.name]()
                terms[f"{pair.name}.feature"] = pair.feature_weight * info_nce(query, key, tau, offset)
            if pair.logit_weight > 0:
                teacher = target_logits.detach().float()
                student = learner_logits.float()
                if pair.logit_loss == "ofa":
                    loss = ofa_loss(student, teacher, target, self.ofa_eps, self.logit_temperature)
                else:
                    loss = kd_loss(student, teacher, self.logit_temperature)
                terms[f"{pair.name}.logit"] = pair.logit_weight * loss

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
