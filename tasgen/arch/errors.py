"""Why a model cannot be read as a stage table (no torch import: a cached plan reports them too)."""

from __future__ import annotations

__all__ = ["ImageSizeError", "ModelReadError", "NoClassifierError", "NotAChainError"]


class ModelReadError(Exception):
    """tasgen cannot read this model as stem + stages + head."""


class NotAChainError(ModelReadError):
    """The model is not one chain of stages, whichever way it is read."""


class NoClassifierError(ModelReadError):
    """The model is a feature encoder: it has no classifier for tasgen to distil through."""


class ImageSizeError(ModelReadError):
    """The image size is not a multiple of the model's patch (its stem's reduction).

    Attributes:
        multiple: the patch size every accepted image size is a multiple of.
    """

    def __init__(self, message: str, multiple: int) -> None:
        super().__init__(message)
        self.multiple = multiple
