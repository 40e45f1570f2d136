"""How large a model tasgen reads: counted while it is built, refused past a limit, before any tracing.

Reading a stage table costs time and memory per module (each is built, hooked,
traced and run on meta tensors: about 4-8 KiB and a few milliseconds each), not per
parameter (meta tensors hold no data). The largest timm models have under 2,000
modules (tf_efficientnet_l2 1,757, maxvit_xlarge 1,548, vit_giant 892); a model
of ``depth=100000`` has two million and would build for an hour. So the build is
watched: every module and parameter registered while it runs is counted, and the
build stops as soon as the count passes the limit, with the size reached and the
limit in the message.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from torch import nn
from torch.nn.modules.module import (
    register_module_module_registration_hook,
    register_module_parameter_registration_hook,
)

from tasgen.arch.errors import ModelReadError

MAX_READ_MODULES = 10_000
"""The most modules tasgen reads in one model: five times the largest timm model's count."""

BYTES_PER_MODULE = 16 * 1024
"""Memory one module costs while it is built and read (4-8 KiB measured, with margin)."""


class ModelTooLargeError(ModelReadError):
    """The model has more modules than tasgen reads on this machine."""


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def read_limit() -> tuple[int, int | None]:
    """The most modules tasgen reads now, and the available memory it was derived from (None: unknown)."""
    memory = available_memory()
    if memory is None:
        return MAX_READ_MODULES, None
    return max(1, min(MAX_READ_MODULES, memory // BYTES_PER_MODULE)), memory


def _millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n:,}"


def _bytes(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


@contextlib.contextmanager
def bounded_build(name: str) -> Iterator[None]:
    """Count the modules and parameters registered inside the block; stop past `read_limit`.

    Args:
        name: the model's name, for the message.

    Raises:
        ModelTooLargeError: as soon as the build registers more modules than the
            limit (raised from inside the model's constructor, which stops it).
    """
    limit, memory = read_limit()
    modules = parameters = 0

    def on_module(_owner: nn.Module, _name: str, _module: nn.Module | None) -> None:
        nonlocal modules
        modules += 1
        if modules > limit:
            bound = (f"{MAX_READ_MODULES:,} (five times the largest timm model's count)" if limit == MAX_READ_MODULES
                     else f"{limit:,}, what {_bytes(memory or 0)} of free memory holds at about "
                          f"{BYTES_PER_MODULE // 1024} KiB a module")
            raise ModelTooLargeError(
                f"{name} is too large to read: building it passed {limit:,} modules "
                f"({_millions(parameters)} parameters so far) before it was done, and tasgen reads at most "
                f"{bound}. Make the model smaller (fewer blocks: kwargs such as depth or depths, or fewer stages)"
            )

    def on_parameter(_owner: nn.Module, _name: str, param: nn.Parameter | None) -> None:
        nonlocal parameters
        parameters += param.numel() if param is not None else 0

    handles = [register_module_module_registration_hook(on_module),
               register_module_parameter_registration_hook(on_parameter)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
