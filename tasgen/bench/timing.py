"""How fast: timed steps and the loader alone (FLOPs and the matmul peak: `tasgen.train.step`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from tasgen.data import build_datasets, build_loaders
from tasgen.spec.schema import Spec


def interleaved_seconds(
    steps_by_name: dict[str, Callable[[], Any]], rounds: int, device: torch.device
) -> dict[str, list[float]]:
    """Seconds of each step in each of ``rounds`` rounds; a round runs every step once.

    Steps that are compared with each other run alternately, not in blocks: a shared
    machine's load, CPU frequency or cache state changes over seconds, and blocks
    would charge such a change to one side only. The order within a round turns by
    one each round, so no step always follows the same other step. Warm-up is the
    caller's (steps are measured as they come).

    Args:
        steps_by_name: the steps, each a callable that runs one step.
        rounds: rounds to time.
        device: where they run (each timed step ends with its synchronisation).

    Returns:
        ``{name: [seconds of round 0, round 1, ...]}``: round ``i`` of two names can be
        divided, which is what makes a ratio's spread meaningful.
    """
    names = list(steps_by_name)
    times: dict[str, list[float]] = {name: [] for name in names}
    _sync(device)
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            steps_by_name[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile) of ``values`` (one value: that value three times)."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


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
