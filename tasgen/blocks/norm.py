"""Normalisation layers for NCHW feature maps: timm's."""

from __future__ import annotations

import timm

LayerNorm2d = timm.layers.LayerNorm2d  # LayerNorm over the channels of an NCHW map (eps 1e-6)
