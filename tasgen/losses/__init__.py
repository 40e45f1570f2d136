"""Losses of tasgen: the pure loss functions and the objectives built from a plan."""

from .classification import cross_entropy
from .info_nce import info_nce
from .kd import kd_loss
from .objective import MODEL_ROLES, OFAObjective, TASObjective, gather_batch
from .ofa import ofa_loss
from .projector import FeatureProjector
from .temperature import LearnableTemperature

__all__ = [
    "MODEL_ROLES",
    "FeatureProjector",
    "LearnableTemperature",
    "OFAObjective",
    "TASObjective",
    "cross_entropy",
    "gather_batch",
    "info_nce",
    "kd_loss",
    "ofa_loss",
]
