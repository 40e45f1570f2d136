"""How fast: timed steps, the model FLOPs of a step, the device's matmul peak, the loader alone."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tasgen.data import build_datasets, build_loaders
from tasgen.spec.schema import Spec
from tasgen.train.precision import Precision


def median_seconds(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Median seconds of ``steps`` calls of ``fn`` after ``warmup`` untimed ones, each ending in a device sync."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def best_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """The fastest of ``repeats`` calls of ``fn`` (after one untimed call)."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def step_flops(step: nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: Precision) -> float:
    """Model FLOPs of one forward+backward (matrix products and convolutions, as FlopCounterMode counts them)."""
    step.train()
    with FlopCounterMode(display=False) as counter:
        with precision.autocast():
            total, _ = step(images, labels)
        total.backward()
    step.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, repeats: int = 5) -> float:
    """FLOP/s of the best of a few large matrix products: bf16 8192^2 on CUDA, fp32 2048^2 on the CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / best_seconds(lambda: a @ b, repeats, device)


def loader_throughput(spec: Spec, batches: int) -> float:
    """Images/s of the spec's training loader alone (its workers, transforms and collation).

    The first batch (worker start-up) is not timed; the loader is restarted when an
    epoch ends before ``batches``.
    """
    splits = build_datasets(spec.data)
    loader, _ = build_loaders(splits.train, splits.test, spec.data, spec.seed)

    def forever() -> Iterator[torch.Tensor]:
        while True:
            for images, _ in loader:
                yield images

    it = forever()
    next(it)
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += next(it).shape[0]
    return seen / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
