"""Stage tables: what tasgen knows about a model, as plain JSON-serialisable data.

Every model, timm or spec-described, reads as stem + stages + final + head. A
stage table records, for each part, the submodules that form it (so the part can
be run alone) and the shape of what it emits. This module must not import torch:
cached tables let `tasgen plan` run without it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from torch import nn

Mixer = Literal["conv", "attention", "mlp"]
Layout = Literal["NCHW", "NHWC", "NLC", "NCL"]
"""NCHW and NHWC maps; NLC tokens (class/register tokens first); NCL, a final map
flattened channels-first, (B, C, H * W), as EfficientViM's forward_features gives it."""
Kind = Literal["cnn", "vit", "mlp", "hybrid"]

GLOBAL_MIXERS: frozenset[str] = frozenset({"attention", "mlp"})

# timm's ViT family adds class/register tokens and position embeddings in this
# method, which also calls `pos_drop`; a stage table names it in place of that module.
POS_EMBED_METHOD = "_pos_embed"


def is_method(path: str) -> bool:
    """Whether a part's entry names a method of the model (``_pos_embed``), not a submodule."""
    return path.startswith("_")


def resolve(model: nn.Module, path: str) -> Callable:
    """What a part's entry calls: the model's method, or the submodule at that dotted path."""
    return getattr(model, path) if is_method(path) else model.get_submodule(path)


def token_grid(size: int | tuple[int, int], reduction: int) -> tuple[int, int]:
    """(rows, columns) of the grid a part at ``reduction`` emits for an input of ``size``.

    Rounded up, as timm's strided convolutions and padded patch embeddings do.
    """
    height, width = (size, size) if isinstance(size, int) else size
    return math.ceil(height / reduction), math.ceil(width / reduction)


def sample_shape(layout: Layout, channels: int, grid: tuple[int, int], prefix_tokens: int = 0) -> tuple[int, ...]:
    """One sample's output shape in ``layout``.

    NCHW is (C, H, W), NHWC is (H, W, C), NLC is (prefix + H * W, C): class or
    register tokens in front of the grid tokens; NCL is (C, H * W).
    """
    rows, cols = grid
    if layout == "NCHW":
        return (channels, rows, cols)
    if layout == "NHWC":
        return (rows, cols, channels)
    if layout == "NCL":
        return (channels, rows * cols)
    return (prefix_tokens + rows * cols, channels)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Part(_Frozen):
    """A run of consecutive submodules and the tensor it emits.

    Attributes:
        modules: dotted submodule paths, called in order on the previous output.
            A name starting with ``_`` is a method of the model (timm's ViTs add
            class tokens and position embeddings in ``_pos_embed``, not a module).
        channels: channels (width) of the output.
        reduction: input side length divided by the output grid's side length.
        layout: memory layout of the output.
        prefix_tokens: class/register tokens in front of the grid tokens (NLC only).
        params: parameter count of the part's own modules.
        cut: in a graph-read table, the node of the traced ``forward_features``
            after which the part ends (None: the part is the modules above, run
            as a chain).
        carry: in a graph-read table, the nodes whose values cross that cut: the
            main tensor (the output described here) first, then what else the
            next part reads (``H, W``, class tokens, other branches).
    """

    modules: list[str]
    channels: int
    reduction: int
    layout: Layout
    prefix_tokens: int = 0
    params: int = 0
    cut: str | None = None
    carry: list[str] = Field(default_factory=list)

    @property
    def extras(self) -> list[str]:
        """What crosses the cut besides the main tensor."""
        return self.carry[1:]


class Stage(Part):
    """One stage: blocks that share a token mixer kind."""

    index: int = Field(..., description="1-based stage number")
    mixer: Mixer
    depth: int = Field(..., ge=1, description="number of blocks")


class Head(_Frozen):
    """What follows the stages: the pooled feature and the classifier."""

    final_modules: list[str] = Field(description="post-stage modules of forward_features (norms, 1x1 convs)")
    feature_channels: int = Field(description="channels of the final feature map (forward_features' output)")
    feature_layout: Layout = Field(description="layout of the final feature map")
    feature_prefix_tokens: int = Field(0, description="class/register tokens in front of its grid tokens (NLC)")
    feature_item: int | None = Field(
        None, description="when forward_features returns a list or tuple (the head fuses every stage), the "
        "index of the final feature map in it; the head reads the whole sequence"
    )
    num_features: int = Field(description="width of the pooled feature (forward_head(pre_logits=True))")
    num_classes: int
    params: int = Field(description="parameters of the final modules and the head")


class StageTable(_Frozen):
    """A model read as stem + stages + head.

    Attributes:
        model: timm name, or ``spec:<role>`` for a stage-described backbone.
        source: where the model comes from (``module``: a model object given in Python).
        family: the model's class name (e.g. ``ResNet``, ``VisionTransformer``).
        input_size: (channels, height, width) the table was computed for.
        mean, std: the normalisation the model expects.
        staged: whether tasgen can run the model part by part (needed to emit an
            assistant from it); ``staged_error`` says why not.
        reader: ``chain`` (each part is its modules called in turn) or ``graph``
            (each part is a piece of the traced ``forward_features``, cut after
            the nodes the parts' ``cut`` names).
    """

    version: int = 5
    model: str
    source: Literal["timm", "spec", "module"]
    family: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    stem: Part
    stages: list[Stage]
    head: Head
    params: int
    staged: bool = True
    staged_error: str | None = None
    reader: Literal["chain", "graph"] = "chain"

    @property
    def has_pos_embed(self) -> bool:
        """Whether the stem calls the model's own ``_pos_embed`` (its prefix tokens and positions)."""
        return POS_EMBED_METHOD in self.stem.modules

    @property
    def kind(self) -> Kind:
        mixers = {s.mixer for s in self.stages}
        if mixers == {"conv"}:
            return "cnn"
        if mixers == {"attention"}:
            return "vit"
        if mixers == {"mlp"}:
            return "mlp"
        return "hybrid"

    @property
    def local_stages(self) -> int:
        """Leading conv stages (the local part)."""
        count = 0
        for stage in self.stages:
            if stage.mixer != "conv":
                break
            count += 1
        return count

    def stage_input(self, index: int) -> Part:
        """What stage `index` (1-based) receives: the stem's or the previous stage's output."""
        return self.stem if index == 1 else self.stages[index - 2]
