"""tasgen's block library: the layers spec-defined backbones and bridges are built from.

One concept per file, re-exported here. The names load on first use (PEP 562), so
that `tasgen.blocks.widths`, which the torch-free planner reads, imports no torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasgen.blocks.attention import Attention, AttentionBlock
    from tasgen.blocks.conv import ConvBlock, ConvNormAct, covering_kernel
    from tasgen.blocks.head import ClassifierHead
    from tasgen.blocks.mixer import TokenMixingBlock
    from tasgen.blocks.mlp import Mlp
    from tasgen.blocks.norm import LayerNorm2d
    from tasgen.blocks.patch import PatchEmbed
    from tasgen.blocks.tokens import TokenBlock2d
    from tasgen.blocks.widths import default_num_heads, hidden_width, window_block_params
    from tasgen.blocks.window import (
        WindowAttentionBlock,
        relative_position_index,
        window_merge,
        window_partition,
    )

_WHERE = {
    "Attention": "attention", "AttentionBlock": "attention",
    "ConvBlock": "conv", "ConvNormAct": "conv", "covering_kernel": "conv",
    "ClassifierHead": "head", "TokenMixingBlock": "mixer", "Mlp": "mlp", "LayerNorm2d": "norm",
    "PatchEmbed": "patch", "TokenBlock2d": "tokens",
    "default_num_heads": "widths", "hidden_width": "widths", "window_block_params": "widths",
    "WindowAttentionBlock": "window", "relative_position_index": "window", "window_merge": "window",
    "window_partition": "window",
}
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
    "window_block_params",
    "window_merge",
    "window_partition",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"tasgen.blocks.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tasgen.blocks' has no attribute {name!r}")
