"""Seeds and random-number-generator states, saved so that a resumed run repeats exactly."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from tasgen.generators import rng_state, seed_everything, set_rng_state

__all__ = ["deterministic", "epoch_seed", "reseed_loader", "rng_state", "seed_everything", "set_rng_state"]


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed seed for one (run seed, epoch, rank)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def reseed_loader(loader: DataLoader, seed: int, epoch: int, rank: int = 0) -> None:
    """Make an epoch's shuffle and worker seeds a function of (seed, epoch) only.

    The loader's generator feeds its RandomSampler and its worker seeds; re-seeding it
    per epoch means a resumed run needs no loader state to reproduce the order.
    """
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):  # streamed datasets (timm's wds/hfids readers) shuffle themselves
        loader.dataset.set_epoch(epoch)
    if loader.generator is not None:
        loader.generator.manual_seed(epoch_seed(seed, epoch, rank))


class deterministic:  # noqa: N801 - used as a context manager, like torch's own
    """Deterministic kernels while training on the CPU; the previous setting is restored after.

    On CUDA it changes nothing: some kernels there have no deterministic version and
    the speed matters more than bit-exact reruns.
    """

    def __init__(self, device: torch.device) -> None:
        self.enabled = device.type == "cpu"

    def __enter__(self) -> None:
        self._before = (torch.are_deterministic_algorithms_enabled(),
                        torch.is_deterministic_algorithms_warn_only_enabled())
        if self.enabled:
            torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc: object) -> None:
        torch.use_deterministic_algorithms(self._before[0], warn_only=self._before[1])
