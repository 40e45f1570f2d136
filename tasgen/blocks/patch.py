"""Patch embedding: timm's strided convolution, followed by a channel LayerNorm, on NCHW maps."""

from __future__ import annotations

import timm


class PatchEmbed(timm.layers.PatchEmbed):
    """timm's `PatchEmbed` (kernel = stride = patch) with LayerNorm over channels, NCHW in and out.

    Inputs whose sides are not multiples of `patch` are zero-padded on the bottom
    and right (timm's ``dynamic_img_pad``), so a side of length n becomes ceil(n / patch).

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        patch: Patch side (and stride).
    """

    def __init__(self, in_ch: int, out_ch: int, patch: int) -> None:
        super().__init__(
            img_size=None, patch_size=patch, in_chans=in_ch, embed_dim=out_ch,
            norm_layer=timm.layers.LayerNorm2d, flatten=False, output_fmt="NCHW",
            strict_img_size=False, dynamic_img_pad=True,
        )
