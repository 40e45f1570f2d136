"""Losses of tasgen: the pure loss functions and the objective built from a spec."""

from .classification import cross_entropy
from .info_nce import info_nce
from .kd import kd_loss
from .objective import MODEL_ROLES, DistillPair, TASObjective, distill_pairs
from .ofa import ofa_loss
from .projector import FeatureProjector
from .temperature import LearnableTemperature

__all__ = [
    "MODEL_ROLES",
    "DistillPair",
    "FeatureProjector",
    "LearnableTemperature",
    "TASObjective",
    "cross_entropy",
    "distill_pairs",
    "info_nce",
    "kd_loss",
    "ofa_loss",
]
