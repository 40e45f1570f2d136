"""tasgen's block library: the layers spec-defined backbones and bridges are built from.

One concept per file, re-exported here.
"""

from tasgen.blocks.attention import Attention, AttentionBlock, default_num_heads
from tasgen.blocks.conv import ConvBlock, ConvNormAct, covering_kernel
from tasgen.blocks.head import ClassifierHead
from tasgen.blocks.mixer import TokenMixingBlock
from tasgen.blocks.mlp import Mlp, hidden_width
from tasgen.blocks.norm import LayerNorm2d
from tasgen.blocks.patch import PatchEmbed
from tasgen.blocks.tokens import TokenBlock2d
from tasgen.blocks.window import (
    WindowAttentionBlock,
    relative_position_index,
    window_merge,
    window_partition,
)

__all__ = [
    "Attention",
    "AttentionBlock",
    "ClassifierHead",
    "ConvBlock",
    "ConvNormAct",
    "LayerNorm2d",
    "Mlp",
    "PatchEmbed",
    "TokenBlock2d",
    "TokenMixingBlock",
    "WindowAttentionBlock",
    "covering_kernel",
    "default_num_heads",
    "hidden_width",
    "relative_position_index",
    "window_merge",
    "window_partition",
]
