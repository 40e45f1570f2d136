"""Numeric precision of a run: autocast dtype, gradient scaling and memory format."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .errors import TrainError


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs.

    Attributes:
        device_type: "cuda" or "cpu".
        dtype: the autocast dtype, or None for plain fp32.
        channels_last: whether images and weights use the NHWC memory format.
    """

    device_type: str
    dtype: torch.dtype | None
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """The autocast context of a forward pass (a null context in fp32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is active only for fp16 (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]


def resolve_precision(precision: str, channels_last: bool | str, device: torch.device) -> Precision:
    """The spec's ``train.precision`` and ``train.channels_last`` on ``device``.

    ``auto`` is bf16 autocast (and channels_last) on CUDA, fp32 (contiguous) on CPU.

    Raises:
        TrainError: fp16 asked for on a CPU.
    """
    cuda = device.type == "cuda"
    if precision == "auto":
        dtype = torch.bfloat16 if cuda else None
    elif precision == "fp32":
        dtype = None
    elif precision == "bf16":
        dtype = torch.bfloat16
    else:
        if not cuda:
            raise TrainError("train.precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        dtype = torch.float16
    nhwc = cuda if channels_last == "auto" else bool(channels_last)
    return Precision(device.type, dtype, nhwc)
