"""Which process this is: rank, world size, device; DDP set-up for torchrun.

Without torch.distributed initialised this is a single process of rank 0, so
every caller can ask the same questions whether or not it runs under torchrun.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as tdist
from torch import nn


def is_distributed() -> bool:
    """Whether torch.distributed is initialised."""
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    """This process's rank (0 without torch.distributed)."""
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without torch.distributed)."""
    return tdist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Rank 0: the only process that logs and writes files."""
    return rank() == 0


def init_from_env() -> None:
    """Join the process group torchrun describes (WORLD_SIZE > 1); otherwise do nothing."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    tdist.init_process_group(backend)


def default_device() -> torch.device:
    """This process's GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes, in place (a no-op in one process)."""
    if is_distributed():
        tdist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    """Wait for every process (a no-op in one process)."""
    if is_distributed():
        tdist.barrier()


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when running distributed, else itself."""
    if not is_distributed():
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def no_sync(module: nn.Module, skip: bool) -> contextlib.AbstractContextManager[None]:
    """DDP's ``no_sync`` for accumulation micro-steps (``skip``); a null context otherwise."""
    inner = getattr(module, "_orig_mod", module)  # look through torch.compile's wrapper
    if skip and isinstance(inner, nn.parallel.DistributedDataParallel):
        return inner.no_sync()
    return contextlib.nullcontext()


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Let rank 0 run the block before the others (downloads, folder creation)."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()
