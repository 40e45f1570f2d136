"""How fast: timed steps and the loader alone (FLOPs and the matmul peak: `tasgen.train.step`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tasgen.data import build_datasets, build_loaders
from tasgen.spec.schema import Spec


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
