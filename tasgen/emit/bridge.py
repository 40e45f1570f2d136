"""The local-to-global bridge (the assistant's only new module)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tasgen.arch.table import POS_EMBED_METHOD, resolve, sample_shape, token_grid
from tasgen.blocks import WindowAttentionBlock
from tasgen.emit.staged import StagedModel, State, main
from tasgen.plan import BridgeGeometry


class BridgeError(ValueError):
    """The bridge cannot produce what the global member's next stage expects."""


class Bridge(nn.Module):
    """Local stage output -> exactly what the global member's next stage expects.

    1. Bring the input to an NCHW grid (grid tokens only; prefix tokens dropped).
    2. Resize the grid and change channels: a 1x1 conv (same resolution), a patch
       conv with kernel = stride = the reduction ratio, or interpolation + 1x1 conv.
    3. One Swin-style windowed attention block (local -> global receptive field).
    4. Emit the global member's layout. When that member's tokens carry position
       embeddings, its own ``_pos_embed`` adds them to the grid tokens. Its class or
       register tokens (``geometry.prefix_source``) are, for ``depth``, the global
       member's own prefix tokens as they stand at this depth of its forward pass
       (given to `forward`); for ``pooled``, the mean of the grid tokens; for
       ``embed``, the ones ``_pos_embed`` inserts (the model's input-level tokens).

    Args:
        geometry: the plan's bridge record.
        image_size: input side the plan was made for (fixes the token grids).
        global_model: the global member, for prefix tokens and positions.
    """

    def __init__(self, geometry: BridgeGeometry, image_size: int, global_model: StagedModel) -> None:
        super().__init__()
        g = geometry
        self.geometry = g
        self.in_grid = token_grid(image_size, g.in_reduction)[0]
        self.out_grid = token_grid(image_size, g.out_reduction)[0]
        kernel = round(g.out_reduction / g.in_reduction) if g.resample == "conv" else 1
        self.proj = nn.Conv2d(g.in_channels, g.out_channels, kernel_size=kernel, stride=kernel)
        self.block = WindowAttentionBlock(g.out_channels, g.heads, g.window_size, g.mlp_ratio)
        self._pos_embed = None
        if g.out_layout == "NLC" and global_model.table.has_pos_embed:
            self._pos_embed = resolve(global_model.model, POS_EMBED_METHOD)
        if g.out_prefix_tokens and self._pos_embed is None and g.prefix_source == "embed":
            raise BridgeError(
                f"{global_model.table.model} expects {g.out_prefix_tokens} prefix tokens but has no _pos_embed "
                "to create them; set assistant.bridge.prefix_tokens to pooled or depth"
            )
        if self._pos_embed is not None and getattr(global_model.model, "dynamic_img_size", False):
            self._grid_tokens = "NHWC"  # _pos_embed then takes (B, H, W, C)
        else:
            self._grid_tokens = "NLC"

    def _to_nchw(self, x: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        if g.in_layout == "NCHW":
            return x
        if g.in_layout == "NHWC":
            return x.permute(0, 3, 1, 2)
        x = x[:, g.in_prefix_tokens :]
        return x.transpose(1, 2).reshape(x.shape[0], g.in_channels, self.in_grid, self.in_grid)

    @property
    def needs_prefix(self) -> bool:
        """Whether `forward` takes the global member's prefix tokens at this depth."""
        return self.geometry.out_prefix_tokens > 0 and self.geometry.prefix_source == "depth"

    def stand_in_prefix(self, x: torch.Tensor) -> torch.Tensor | None:
        """Zero prefix tokens for input `x`, where `needs_prefix` (shape checks and FLOP counts)."""
        if not self.needs_prefix:
            return None
        return x.new_zeros(x.shape[0], self.geometry.out_prefix_tokens, self.geometry.out_channels)

    def forward(self, x: State, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Map a local stage output to the global member's next stage input.

        Args:
            x: The local stage output (its main tensor, when the stage carries more).
            prefix: (B, prefix tokens, C): the global member's prefix tokens at this
                depth; needed when `needs_prefix`, ignored otherwise.
        """
        g = self.geometry
        x = self._to_nchw(main(x))
        if g.resample == "interpolate":
            x = F.interpolate(x, size=(self.out_grid, self.out_grid), mode="bilinear", align_corners=False)
        x = self.proj(x)
        x = self.block(x.permute(0, 2, 3, 1))  # NHWC
        if g.out_layout == "NHWC":
            return x
        if g.out_layout == "NCHW":
            return x.permute(0, 3, 1, 2)
        n = g.out_prefix_tokens
        if self._pos_embed is None:  # no positions to add (or they are relative, inside the blocks)
            grid = x.flatten(1, 2)
            if n == 0:
                return grid
        else:
            x = self._pos_embed(x if self._grid_tokens == "NHWC" else x.flatten(1, 2))
            if isinstance(x, tuple):  # EVA's returns (tokens, rope table); the rope is recomputed later
                x = x[0]
            if n == 0 or g.prefix_source == "embed":
                return x
            grid = x[:, n:]
        if g.prefix_source == "pooled":
            prefix = grid.mean(1, keepdim=True).expand(-1, n, -1)
        elif prefix is None:
            raise BridgeError("this bridge takes the global member's prefix tokens at its depth; none were given")
        return torch.cat([prefix.to(grid.dtype), grid], dim=1)

    def check(self, x: torch.Tensor) -> None:
        """Raise BridgeError unless this bridge maps a sample of its input correctly."""
        g = self.geometry
        y = self(x, self.stand_in_prefix(x))
        grid = (self.out_grid, self.out_grid)
        want = (x.shape[0], *sample_shape(g.out_layout, g.out_channels, grid, g.out_prefix_tokens))
        if tuple(y.shape) != want:
            raise BridgeError(f"bridge emits {tuple(y.shape)} but the plan expects {want}")
