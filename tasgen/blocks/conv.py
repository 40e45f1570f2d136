"""Convolutional building blocks (NCHW in, NCHW out)."""

from __future__ import annotations

import timm
import torch
from torch import nn


def covering_kernel(stride: int) -> int:
    """The smallest odd kernel (at least 3) that sees every input pixel at `stride`.

    With padding `kernel // 2`, a convolution of this kernel maps a side of length n
    to ceil(n / stride), the same rule as a padded patch embedding.

    Args:
        stride: Convolution stride, >= 1.

    Returns:
        3 for strides up to 3, else the odd number at or just above `stride`.
    """
    return max(3, stride + 1 - stride % 2)


class ConvNormAct(timm.layers.ConvNormAct):
    """timm's convolution, BatchNorm, ReLU, built as ``(in_ch, out_ch, kernel_size, stride, act)``.

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        kernel_size: Square kernel side; padding ``kernel_size // 2`` keeps "same" size at stride 1
            (and maps a side n to ceil(n / stride) with `covering_kernel`).
        stride: Convolution stride.
        act: Apply ReLU after the norm.
    """

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, act: bool = True
    ) -> None:
        super().__init__(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=False, apply_act=act)


class ConvBlock(nn.Module):
    """Residual basic block (ResNet-18 style).

    conv-BN-ReLU, conv-BN, plus a shortcut (1x1 conv-BN when the shape changes),
    then ReLU. A side of length n becomes ceil(n / stride).

    Args:
        in_ch: Input channels.
        out_ch: Output channels.
        stride: Stride of the first convolution and of the shortcut.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_ch, out_ch, covering_kernel(stride), stride)
        self.conv2 = ConvNormAct(out_ch, out_ch, 3, 1, act=False)
        if stride != 1 or in_ch != out_ch:
            self.shortcut: nn.Module = ConvNormAct(in_ch, out_ch, 1, stride, act=False)
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))
