"""MLP-Mixer block on (B, N, C) tokens."""

from __future__ import annotations

import torch
from torch import nn

from tasgen.blocks.mlp import Mlp, hidden_width


class TokenMixingBlock(nn.Module):
    """Pre-norm MLP-Mixer block: a token-mixing MLP across N, then a channel MLP across C.

    The token MLP's weights are sized by the token count, so the block only
    accepts inputs with exactly `num_tokens` tokens.

    Args:
        dim: Token width C.
        num_tokens: Token count N (height * width of the grid).
        mlp_ratio: Hidden width of the channel MLP relative to `dim`.
        token_mlp_ratio: Hidden width of the token MLP relative to `dim` (MLP-Mixer's
            choice: it keeps the token MLP linear, not quadratic, in N).
    """

    def __init__(
        self, dim: int, num_tokens: int, mlp_ratio: float = 4.0, token_mlp_ratio: float = 0.5
    ) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_tokens = Mlp(num_tokens, hidden_width(dim, token_mlp_ratio))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp_channels = Mlp(dim, hidden_width(dim, mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.num_tokens:
            raise ValueError(
                f"TokenMixingBlock was built for {self.num_tokens} tokens but got {x.shape[1]}; "
                "the input image size must match the size the model was built for"
            )
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.mlp_channels(self.norm2(x))
