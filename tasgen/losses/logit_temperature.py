"""``distill.logits.temperature: auto`` for the kd logit loss: a temperature chosen from the teacher.

The teacher's *confidence* is its mean top softmax probability (at T = 1) on
training images as the student sees them (the training transforms applied). A
teacher that fits its training images (confidence at or above the threshold, 0.8
by default: a teacher fitted with label smoothing 0.1 sits near 0.9 on them) gives
targets close to its labels at T = 1, so T = 4 is taken to show how it ranks the
other classes, Hinton's CIFAR recipe. A teacher unsure on many of them already
carries that ranking at T = 1, and T = 4 would flatten it towards uniform: T = 1,
the ImageNet recipe. docs/design.md gives the measurements behind the rule.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn

from tasgen.generators import rng_state, seed_everything, set_rng_state

__all__ = [
    "CONFIDENT_TEMPERATURE",
    "UNSURE_TEMPERATURE",
    "choose_logit_temperature",
    "teacher_confidence",
]

CONFIDENT_TEMPERATURE = 4.0
"""The temperature where the teacher's confidence is at least the threshold."""
UNSURE_TEMPERATURE = 1.0
"""The temperature where it is below."""


def choose_logit_temperature(confidence: float, threshold: float) -> float:
    """`CONFIDENT_TEMPERATURE` when ``confidence >= threshold``, else `UNSURE_TEMPERATURE`."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"a confidence is a probability in [0, 1], got {confidence}")
    return CONFIDENT_TEMPERATURE if confidence >= threshold else UNSURE_TEMPERATURE


@contextlib.contextmanager
def _random_state_kept() -> Iterator[None]:
    """Run a block (random training transforms) without moving Python's, NumPy's or torch's generators."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def teacher_confidence(
    system: nn.Module,
    dataset: Any,
    device: torch.device,
    *,
    max_images: int = 1024,
    batch_size: int = 64,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[float, int]:
    """The teacher's mean top probability on up to ``max_images`` images of ``dataset``.

    The images are a seeded sample (every class of a class-ordered folder has its
    share), with the dataset's own transforms; the random generators are left as they
    were, so a run that measures this trains exactly as one that does not. Under DDP
    each rank reads its share of the sample and the sums are added over ranks; an
    image's augmentation is seeded by its index, so the result does not depend on how
    many processes share the sample.

    Args:
        system: a distillation system: ``system(images, members={"teacher"})["teacher"][0]``
            are the teacher's logits for images in [0, 1].
        dataset: map-style ``(image, label)`` items, or an iterable of them (its first
            ``max_images`` are read).

    Returns:
        ``(confidence, images)``: the mean, and how many images it is over.
    """
    total = torch.zeros(2, dtype=torch.float64, device=device)
    was_training = system.training
    system.eval()
    with _random_state_kept(), torch.no_grad():
        for images in _batches(_images(dataset, max_images, seed, rank, world_size), batch_size):
            logits = system(images.to(device), members={"teacher"})["teacher"][0].float()
            total[0] += logits.softmax(-1).amax(-1).double().sum()
            total[1] += logits.shape[0]
    system.train(was_training)
    if tdist.is_available() and tdist.is_initialized():
        tdist.all_reduce(total)  # every rank's share of the sample
    count = int(total[1].item())
    if count == 0:
        raise ValueError("the training set has no images to measure the teacher's confidence on")
    return float(total[0].item()) / count, count


def _images(dataset: Any, max_images: int, seed: int, rank: int, world_size: int) -> Iterator[torch.Tensor]:
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        size = len(dataset)
        order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:max_images].tolist()
        for index in order[rank::world_size]:
            seed_everything(seed + index)  # its augmentation, whichever rank reads it and whatever the run's seed
            yield dataset[index][0]
    else:  # a stream: its first images
        seed_everything(seed)
        for position, item in enumerate(itertools.islice(iter(dataset), max_images)):
            if position % world_size == rank:
                yield item[0]


def _batches(images: Iterator[torch.Tensor], batch_size: int) -> Iterator[torch.Tensor]:
    while chunk := list(itertools.islice(images, batch_size)):
        yield torch.stack(chunk)
