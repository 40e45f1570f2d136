"""Backbones described stage by stage in a spec, built from tasgen's block library.

A `Backbone` answers the same questions as a timm model (`feature_info`,
`forward_features`, `forward_head`, `forward_intermediates`, ...), so the rest of
tasgen reads it exactly like one. Every stage takes and returns NCHW maps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tasgen.blocks import (
    AttentionBlock,
    ClassifierHead,
    ConvBlock,
    ConvNormAct,
    LayerNorm2d,
    PatchEmbed,
    TokenBlock2d,
    TokenMixingBlock,
    covering_kernel,
    default_num_heads,
)
from tasgen.spec.schema import BackboneSpec, StageSpec, StemSpec

# ImageNet statistics (timm's IMAGENET_DEFAULT_MEAN / _STD), kept here so that the
# block library does not import timm.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _take_indices(num_stages: int, indices: int | list[int] | tuple[int, ...] | None) -> list[int]:
    """timm's rule: None = all stages, an int n = the last n, a sequence = those (negative from the end).

    Ours, not timm's ``feature_take_indices``: timm exports it only from a private module
    (timm.models._features) and reports a bad index with an AssertionError.
    """
    if indices is None:
        indices = num_stages
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise ValueError(
                f"indices={indices} asks for the last {indices} of {num_stages} stages"
            )
        return list(range(num_stages - indices, num_stages))
    taken = []
    for i in indices:
        j = i + num_stages if i < 0 else i
        if not 0 <= j < num_stages:
            raise ValueError(f"stage index {i} is out of range for {num_stages} stages")
        taken.append(j)
    if not taken:
        raise ValueError("indices is empty: ask for at least one stage")
    return taken


def build_stem(spec: StemSpec, in_chans: int) -> nn.Module:
    """The stem of a spec-defined backbone.

    Args:
        spec: `kind: conv` gives one stride-2 3x3 conv-BN-ReLU per factor 2 of the
            stride (and one more conv for an odd remainder); `kind: patch` one patchify
            convolution plus norm.
        in_chans: Image channels.

    Returns:
        A module mapping (B, in_chans, H, W) to (B, channels, ceil(H / stride), ceil(W / stride)).
    """
    if spec.kind == "patch":
        return PatchEmbed(in_chans, spec.channels, spec.stride)
    strides = []
    rest = spec.stride
    while rest % 2 == 0:
        strides.append(2)
        rest //= 2
    if rest > 1 or not strides:
        strides.append(rest)
    layers = []
    ch = in_chans
    for s in strides:
        layers.append(ConvNormAct(ch, spec.channels, covering_kernel(s), s))
        ch = spec.channels
    return nn.Sequential(*layers)


def build_stage(
    spec: StageSpec, index: int, in_ch: int, reduction: int, img_size: int
) -> nn.Sequential:
    """One stage of a spec-defined backbone.

    Args:
        spec: The stage.
        index: Its position in the spec's `stages` list (for error messages).
        in_ch: Channels of its input.
        reduction: Total stride of the model at the stage's output.
        img_size: Image side the model is built for (fixes the token grid of mlp stages).

    Returns:
        nn.Sequential mapping NCHW to NCHW. Its first element downsamples when the
        stage strides or changes channels: a strided `ConvBlock` in conv stages (it
        counts as one of the `depth` blocks), a `PatchEmbed` otherwise.

    Raises:
        ValueError: If an mlp stage has no well-defined token grid.
    """
    out_ch = spec.channels
    if spec.mixer == "conv":
        blocks = [ConvBlock(in_ch, out_ch, spec.stride)]
        blocks += [ConvBlock(out_ch, out_ch) for _ in range(spec.depth - 1)]
        return nn.Sequential(*blocks)

    layers: list[nn.Module] = []
    if spec.stride > 1 or in_ch != out_ch:
        layers.append(PatchEmbed(in_ch, out_ch, spec.stride))
    if spec.mixer == "attention":
        heads = spec.heads or default_num_heads(out_ch)
        layers += [
            TokenBlock2d(AttentionBlock(out_ch, heads, spec.mlp_ratio)) for _ in range(spec.depth)
        ]
    else:
        # A token-mixing MLP is sized by the token count, so the grid must be exact:
        # a padded border would make the model depend on how the image was padded.
        if img_size % reduction:
            raise ValueError(
                f"stages[{index}] (mixer: mlp) needs a fixed token grid, but img_size {img_size} "
                f"is not divisible by the total stride {reduction} reached at this stage; "
                f"use an img_size that is a multiple of {reduction}, or a conv/attention mixer"
            )
        grid = img_size // reduction
        layers += [
            TokenBlock2d(TokenMixingBlock(out_ch, grid * grid, spec.mlp_ratio))
            for _ in range(spec.depth)
        ]
    return nn.Sequential(*layers)


class Backbone(nn.Module):
    """A classifier built from a `BackboneSpec`: stem, stages, final norm, head.

    It exposes timm's model interface: `feature_info`, `pretrained_cfg`,
    `forward_features`, `forward_head`, `forward_intermediates`,
    `reset_classifier`, `get_classifier`.

    Args:
        spec: The stem and stage list.
        num_classes: Classes of the head; 0 for a head that returns pooled features.
        img_size: Side of the (square) images the model is built for.
        in_chans: Image channels.

    Raises:
        ValueError: If a stage cannot be built for this `img_size` (the message names it).
    """

    def __init__(
        self, spec: BackboneSpec, num_classes: int, img_size: int, in_chans: int = 3
    ) -> None:
        super().__init__()
        if img_size < 1:
            raise ValueError(f"img_size must be >= 1, got {img_size}")
        self.num_classes = num_classes
        self.img_size = img_size
        self.in_chans = in_chans

        self.stem = build_stem(spec.stem, in_chans)
        reduction, ch = spec.stem.stride, spec.stem.channels
        self.stages = nn.ModuleList()
        self.feature_info: list[dict[str, Any]] = []
        for i, stage_spec in enumerate(spec.stages):
            reduction *= stage_spec.stride
            self.stages.append(build_stage(stage_spec, i, ch, reduction, img_size))
            ch = stage_spec.channels
            self.feature_info.append(dict(module=f"stages.{i}", num_chs=ch, reduction=reduction))

        self.num_features = ch
        # Conv stages end in BN-ReLU already; token stages are pre-norm and need a final norm.
        self.norm = nn.BatchNorm2d(ch) if spec.stages[-1].mixer == "conv" else LayerNorm2d(ch)
        self.head = ClassifierHead(ch, num_classes, spec.head_dropout)
        self.pretrained_cfg: dict[str, Any] = dict(
            input_size=(in_chans, img_size, img_size),
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            num_classes=num_classes,
            interpolation="bicubic",
            crop_pct=1.0,
            first_conv="stem",
            classifier="head.fc",
        )
        self.apply(self._init_weights)

    @classmethod
    def from_spec(
        cls, spec: BackboneSpec, num_classes: int, img_size: int, in_chans: int = 3
    ) -> Backbone:
        """Build a backbone from its spec (same arguments as the constructor)."""
        return cls(spec, num_classes, img_size, in_chans)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @property
    def default_cfg(self) -> dict[str, Any]:
        """Alias of `pretrained_cfg`, as on timm models."""
        return self.pretrained_cfg

    def get_classifier(self) -> nn.Module:
        """The final classifier layer (`head.fc`)."""
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier with a fresh one for `num_classes` (0: no classifier).

        Args:
            num_classes: New class count.
            global_pool: Only "avg" (or None) is supported; accepted for timm compatibility.
        """
        if global_pool not in (None, "avg"):
            raise ValueError(
                f"Backbone pools by average only; global_pool={global_pool!r} is not supported"
            )
        self.num_classes = num_classes
        self.pretrained_cfg["num_classes"] = num_classes
        self.head.reset(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem, every stage, final norm: (B, in_chans, H, W) -> (B, num_features, h, w)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool and classify a `forward_features` map.

        Args:
            x: Output of `forward_features`.
            pre_logits: Return the pooled (B, num_features) vector instead of logits.

        Returns:
            Logits (B, num_classes), or pooled features.
        """
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Forward that also returns stage outputs, with timm's semantics.

        Args:
            x: Images (B, in_chans, H, W).
            indices: Stages to return: None = all, int n = the last n, sequence = those
                (negative counts from the end).
            norm: Apply the final norm to the last stage's output (the only stage whose
                width it fits).
            stop_early: Do not run stages after the last requested one.
            output_fmt: "NCHW" or "NHWC", for the intermediates.
            intermediates_only: Return only the list of intermediates.

        Returns:
            The intermediates, or (final features, intermediates); the final features
            are normed only when the last stage ran.
        """
        if output_fmt not in ("NCHW", "NHWC"):
            raise ValueError(f"output_fmt must be 'NCHW' or 'NHWC', got {output_fmt!r}")
        take = _take_indices(len(self.stages), indices)
        last = len(self.stages) - 1
        stages = self.stages[: max(take) + 1] if stop_early else self.stages

        intermediates = []
        x = self.stem(x)
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take:
                y = self.norm(x) if norm and i == last else x
                intermediates.append(y.permute(0, 2, 3, 1) if output_fmt == "NHWC" else y)
        if intermediates_only:
            return intermediates
        if len(stages) == last + 1:
            x = self.norm(x)
        return x, intermediates
