"""Peak memory of a block of code: CUDA's allocator statistics, or the process's resident set on the CPU.

On the CPU two process-wide settings are changed for the duration of a measurement
only: glibc's mmap threshold (so freed tensors go back to the system and do not
hide the next block's memory) and the kernel's peak-RSS mark
(``/proc/self/clear_refs``, so the peak is the block's own).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import platform
import re
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

_MIB = 2**20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
_GLIBC_MMAP_THRESHOLD = 128 * 1024  # glibc's default (DEFAULT_MMAP_THRESHOLD_MIN)


def memory_measure(device: torch.device) -> str:
    """What `measure_memory` reads on ``device`` (a bench JSON key documents it)."""
    if device.type == "cuda":
        return "cuda_max_allocated"
    return "rss_peak_delta" if _can_reset_rss_peak() else "ru_maxrss_delta"


@contextlib.contextmanager
def measure_memory(device: torch.device) -> Iterator[Callable[[], float]]:
    """Peak memory (MiB) of the block, read through the callable it yields once the block ends.

    CUDA: the peak of ``torch.cuda.max_memory_allocated`` minus what was allocated
    before the block. CPU: the peak resident set size during the block minus the
    size before it (Linux: the peak is reset through ``/proc/self/clear_refs``;
    elsewhere ``ru_maxrss``, which only shows new peaks).
    """
    box: list[float] = []
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield lambda: box[0]
        torch.cuda.synchronize(device)
        # What the block allocated on top of what was alive before it (the batch).
        box.append((torch.cuda.max_memory_allocated(device) - before) / _MIB)
        return
    with _mmap_threshold(1 << 20):
        _trim()
        before = _rss_kib()
        if _can_reset_rss_peak():
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak RSS mark
        yield lambda: box[0]
        box.append(max(_rss_peak_kib() - before, 0) / 1024)


@contextlib.contextmanager
def _mmap_threshold(size: int) -> Iterator[None]:
    """glibc's mmap threshold fixed at ``size`` for the block, then back at glibc's default.

    glibc raises its threshold after large frees, so freed tensors would stay in the
    heap and hide the next block's memory; a fixed threshold returns them at once.
    (glibc offers no call that reads the threshold or turns its sliding back on, so
    the block ends with glibc's initial value, fixed.)
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, size)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD)


def _can_reset_rss_peak() -> bool:
    return os.access("/proc/self/clear_refs", os.W_OK) and Path("/proc/self/status").is_file()


def _rss_kib() -> int:
    status = Path("/proc/self/status")
    if status.is_file():
        return int(re.search(r"VmRSS:\s+(\d+)", status.read_text()).group(1))  # type: ignore[union-attr]
    return _rss_peak_kib()


def _rss_peak_kib() -> int:
    status = Path("/proc/self/status")
    if status.is_file():
        return int(re.search(r"VmHWM:\s+(\d+)", status.read_text()).group(1))  # type: ignore[union-attr]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if platform.system() == "Darwin" else peak  # bytes on macOS, KiB on Linux


def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def _trim() -> None:
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
