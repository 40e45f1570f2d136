"""The teacher's confidence behind kd's ``temperature: auto``: what it measures, on which images, at what cost."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from tasgen.losses.logit_temperature import (
    CONFIDENT_TEMPERATURE,
    UNSURE_TEMPERATURE,
    choose_logit_temperature,
    teacher_confidence,
)


class Teacher(nn.Module):
    """A system whose teacher's logits are a fixed linear map of the image (the answer form of a system)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3 * 4 * 4, 5)
        self.seen: list[set[str]] = []

    def forward(self, images: torch.Tensor, members: set[str] | None = None) -> dict:
        self.seen.append(set(members or ()))
        return {"teacher": (3 * self.linear(images.flatten(1)), images.new_zeros(len(images), 2))}


class Augmented(torch.utils.data.Dataset):
    """Images by class order (class i: items 10i..10i+9); each read draws from torch's and Python's generators."""

    def __init__(self, size: int = 50) -> None:
        g = torch.Generator().manual_seed(1)
        self.images = torch.rand(size, 3, 4, 4, generator=g)
        self.reads: list[int] = []

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        self.reads.append(index)
        jitter = 0.005 * torch.rand(()) + 0.005 * random.random()  # torchvision's generator and timm's
        return (self.images[index] + jitter).clamp(0, 1), index // 10


def _mean_top(system: Teacher, images: torch.Tensor) -> float:
    with torch.no_grad():
        return float(system(images)["teacher"][0].softmax(-1).amax(-1).mean())


def test_the_rule_is_four_at_or_above_the_threshold_and_one_below() -> None:
    assert choose_logit_temperature(0.8, 0.8) == CONFIDENT_TEMPERATURE == 4.0
    assert choose_logit_temperature(0.7999, 0.8) == UNSURE_TEMPERATURE == 1.0
    with pytest.raises(ValueError, match="probability"):
        choose_logit_temperature(-0.1, 0.8)


def test_confidence_is_the_teachers_mean_top_probability_and_moves_no_generator() -> None:
    system, data = Teacher().train(), Augmented()
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(5)
    before = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    confidence, count = teacher_confidence(system, data, torch.device("cpu"), batch_size=8)
    assert count == 50 and sorted(data.reads) == list(range(50))  # all of a small set, each image once
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]
    assert np.array_equal(np.random.get_state()[1], before[2])
    assert system.training and system.seen and all(m == {"teacher"} for m in system.seen)  # teacher only
    assert confidence == pytest.approx(_mean_top(system, data.images), abs=0.01)  # the augmentation is small
    assert 0.2 < confidence < 1.0
    # the same images and augmentation draws whatever the generators held: a property of the teacher and data
    for seed in (0, 1):
        torch.manual_seed(seed)
        random.seed(seed)
        assert teacher_confidence(system, data, torch.device("cpu"), batch_size=8)[0] == confidence


def test_a_large_set_is_sampled_across_its_classes_and_ranks_share_the_sample() -> None:
    system, data = Teacher(), Augmented()
    confidence, count = teacher_confidence(system, data, torch.device("cpu"), max_images=20)
    sample = list(data.reads)
    assert count == 20 and len(set(sample)) == 20
    assert len({i // 10 for i in sample}) >= 4  # not the first 20 items (two classes) of a class-ordered set
    parts = []
    for rank in (0, 1):
        data.reads.clear()
        parts.append((*teacher_confidence(system, data, torch.device("cpu"), max_images=20, rank=rank,
                                          world_size=2), list(data.reads)))
    assert sorted(parts[0][2] + parts[1][2]) == sorted(sample)
    assert parts[0][1] + parts[1][1] == 20
    merged = (parts[0][0] * parts[0][1] + parts[1][0] * parts[1][1]) / 20  # what the all-reduce adds up
    assert merged == pytest.approx(confidence, abs=1e-9)


def test_a_stream_gives_its_first_images() -> None:
    system, data = Teacher(), Augmented()

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return (data[i] for i in range(len(data)))

    confidence, count = teacher_confidence(system, Stream(), torch.device("cpu"), max_images=12)
    assert count == 12 and data.reads[:12] == list(range(12))
    assert confidence == pytest.approx(_mean_top(system, data.images[:12]), abs=0.01)
    with pytest.raises(ValueError, match="no images"):
        teacher_confidence(system, [], torch.device("cpu"))
