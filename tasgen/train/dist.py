"""Which process this is: rank, world size, device; DDP set-up for torchrun.

The process-group set-up stays ours: timm's ``init_distributed_device`` reads its
training script's argparse namespace, and NCCL's ``device_id`` binding is not in it.

Without torch.distributed initialised this is a single process of rank 0, so
every caller can ask the same questions whether or not it runs under torchrun.
"""

from __future__ import annotations

import contextlib
import inspect
import os

import torch
import torch.distributed as tdist
from timm.utils import distribute_bn
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


def init_from_env() -> bool:
    """Join the process group torchrun describes (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU.

    torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; the
    group is initialised from them (``env://``).

    Returns:
        Whether this call created the group; its caller then ends it with `shutdown`.
    """
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        tdist.init_process_group("nccl", device_id=device)
    else:
        tdist.init_process_group("gloo")
    return True


def shutdown(wait: bool = True) -> None:
    """Leave the process group; with ``wait``, after a barrier, so no rank tears it down under another."""
    if is_distributed():
        if wait:
            tdist.barrier()
        tdist.destroy_process_group()


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


def all_reduce_min(tensor: torch.Tensor) -> torch.Tensor:
    """Minimum of ``tensor`` over processes, in place (a no-op in one process)."""
    if is_distributed():
        tdist.all_reduce(tensor, op=tdist.ReduceOp.MIN)
    return tensor


def average_buffers(module: nn.Module) -> None:
    """Average the BatchNorm running statistics of ``module`` over processes (timm's ``distribute_bn``).

    Without SyncBN each process's BatchNorm tracks statistics of its own shard; the
    trainer averages them before evaluating and saving, so that every rank
    evaluates (and rank 0 saves) the same model. A no-op in one process.
    """
    if is_distributed():
        distribute_bn(module, world_size(), reduce=True)


def barrier() -> None:
    """Wait for every process (a no-op in one process)."""
    if is_distributed():
        tdist.barrier()


def wrap_ddp(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` in DistributedDataParallel when running distributed, else itself.

    The step runs teacher, student and assistant in one forward, so DDP wraps the
    whole step but manages only what trains: frozen parameters (the teacher) and
    the buffers of modules without trainable parameters (the teacher's BN
    statistics, the normalisation constants) are handed to DDP as ignored, so they
    are neither broadcast nor bucketed. Buffers are not broadcast at every forward
    either (``forward_sync_buffers=False``): the trainer averages BN statistics over
    ranks before each evaluation (`average_buffers`), which costs one all-reduce
    per epoch instead of one broadcast per step.
    """
    if not is_distributed():
        return module
    module._ddp_params_and_buffers_to_ignore = sorted(_frozen_names(module))  # DDP's documented hook
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # torch 2.14 renamed broadcast_buffers; the project supports torch >= 2.4.
    no_buffer_sync = (
        {"forward_sync_buffers": False}
        if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters
        else {"broadcast_buffers": False}
    )
    return ddp(module, device_ids=ids, gradient_as_bucket_view=True, **no_buffer_sync)


def _frozen_names(module: nn.Module) -> set[str]:
    # Every name a tensor is reachable by: DDP filters by name, and a shared
    # module (the assistant's borrowed stages) has several.
    names = set()
    for prefix, sub in module.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        trains = any(p.requires_grad for p in sub.parameters())
        for name, p in sub.named_parameters(recurse=False, remove_duplicate=False):
            if not p.requires_grad:
                names.add(dot + name)
        if not trains:
            names.update(dot + name for name, _ in sub.named_buffers(recurse=False, remove_duplicate=False))
    return names


def no_sync(module: nn.Module, skip: bool) -> contextlib.AbstractContextManager[None]:
    """DDP's ``no_sync`` for accumulation micro-steps (``skip``); a null context otherwise."""
    inner = getattr(module, "_orig_mod", module)  # look through torch.compile's wrapper
    if skip and isinstance(inner, nn.parallel.DistributedDataParallel):
        return inner.no_sync()
    return contextlib.nullcontext()
