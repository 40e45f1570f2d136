"""build_loaders: seeded order, drop_last, distributed shards, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from tasgen.data import DataError, build_datasets, build_loaders
from tasgen.spec.schema import DataSpec


def _synthetic(**overrides: object) -> tuple[DataSpec, Dataset, Dataset]:
    data = DataSpec.model_validate(
        {
            "dataset": "synthetic",
            "num_samples": 100,
            "image_size": 8,
            "batch_size": 16,
            "eval_fraction": 0.25,
            "val_fraction": 0,
        }
        | overrides
    )
    splits = build_datasets(data)
    return data, splits.train, splits.test


def _epoch(loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = zip(*loader, strict=True)
    return torch.cat(images), torch.cat(labels)


def test_same_seed_same_order_other_seed_other_order() -> None:
    data, train, evaluate = _synthetic(augment={"hflip": 0.0})
    a, _ = build_loaders(train, evaluate, data, seed=7)
    b, _ = build_loaders(train, evaluate, data, seed=7)
    c, _ = build_loaders(train, evaluate, data, seed=8)
    first_a, first_b, first_c = _epoch(a), _epoch(b), _epoch(c)
    assert torch.equal(first_a[0], first_b[0]) and torch.equal(first_a[1], first_b[1])
    assert not torch.equal(first_a[1], first_c[1])
    # A new epoch reshuffles, reproducibly.
    second_a, second_b = _epoch(a), _epoch(b)
    assert torch.equal(second_a[1], second_b[1]) and not torch.equal(second_a[1], first_a[1])


def test_drop_last_and_full_eval() -> None:
    data, train, evaluate = _synthetic()
    train_loader, eval_loader = build_loaders(train, evaluate, data, seed=0)
    assert len(train) == 75 and len(train_loader) == 4  # 75 // 16, the partial batch dropped
    images, labels = next(iter(train_loader))
    assert images.shape == (16, 3, 8, 8) and images.dtype == torch.float32
    assert labels.dtype == torch.int64
    assert torch.equal(_epoch(eval_loader)[1], evaluate.labels)  # in order, nothing dropped


def test_workers_reproduce_augmentation() -> None:
    data, train, evaluate = _synthetic(
        num_workers=2, augment={"randaugment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.5}
    )
    a, _ = build_loaders(train, evaluate, data, seed=1)
    b, _ = build_loaders(train, evaluate, data, seed=1)
    assert a.persistent_workers and a.prefetch_factor == 4
    images_a, labels_a = _epoch(a)
    images_b, labels_b = _epoch(b)
    assert torch.equal(labels_a, labels_b) and torch.equal(images_a, images_b)


def test_distributed_shards() -> None:
    data, train, evaluate = _synthetic(batch_size=8)
    loaders = [
        build_loaders(train, evaluate, data, seed=0, distributed=True, rank=r, world_size=2)
        for r in range(2)
    ]
    train_sets = [set(iter(tl.sampler)) for tl, _ in loaders]
    assert train_sets[0].isdisjoint(train_sets[1])
    assert all(len(tl) == 37 // 8 for tl, _ in loaders)  # 75 images -> 37 per rank
    eval_sets = [list(iter(el.sampler)) for _, el in loaders]
    assert sorted(eval_sets[0] + eval_sets[1]) == list(range(len(evaluate)))  # no padding
    tl = loaders[0][0]
    tl.sampler.set_epoch(1)
    assert set(iter(tl.sampler)) != train_sets[0]


def test_batch_larger_than_train_set_is_a_data_error() -> None:
    data, train, evaluate = _synthetic(batch_size=128)
    with pytest.raises(DataError, match="batch_size"):
        build_loaders(train, evaluate, data, seed=0)
