"""The spec front end: schema, loading with located errors, and generated references.

Nothing here imports torch or timm, so `tasgen validate` and `tasgen schema` stay fast.
"""

from .errors import Location, Problem, SpecError
from .load import OVERRIDE_FILE, LoadedSpec, load_spec
from .reference import json_schema, reference_markdown
from .schema import (
    AssistantSpec,
    BackboneSpec,
    BridgeSpec,
    DataSpec,
    DistillSpec,
    ModelSpec,
    Spec,
    StageSpec,
    StemSpec,
    TimmModelSpec,
    TrainSpec,
)

__all__ = [
    "OVERRIDE_FILE",
    "AssistantSpec",
    "BackboneSpec",
    "BridgeSpec",
    "DataSpec",
    "DistillSpec",
    "LoadedSpec",
    "Location",
    "ModelSpec",
    "Problem",
    "Spec",
    "SpecError",
    "StageSpec",
    "StemSpec",
    "TimmModelSpec",
    "TrainSpec",
    "json_schema",
    "load_spec",
    "reference_markdown",
]
