"""`build_loaders`: seeded DataLoaders, single-process or one shard per DDP rank."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import (
    DataLoader,
    Dataset,
    DistributedSampler,
    IterableDataset,
    Sampler,
    Subset,
)

from tasgen.spec.schema import DataSpec

from .errors import DataError

__all__ = ["EvalShardSampler", "NamedReadErrors", "build_eval_loader", "build_loaders"]


class NamedReadErrors(Dataset):
    """A file-backed dataset whose unreadable image is a `DataError` naming the file.

    PIL raises ``UnidentifiedImageError`` or ``OSError("image file is truncated")``
    from deep inside a worker; the user needs the file's name and what to do.

    Args:
        dataset: A dataset whose items are read from files (ImageFolder, timm's ImageDataset, ...).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except OSError as err:  # UnidentifiedImageError is an OSError too
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise DataError(
                f"cannot read the image {_file_of(self.dataset, index)} ({reason}). Replace or remove the file."
            ) from None

    def __getattr__(self, name: str):  # classes, samples, ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def _file_of(dataset: Dataset, index: int) -> str:
    if isinstance(dataset, Subset):  # the train/validation carve: name the file, not the position
        return _file_of(dataset.dataset, dataset.indices[index])
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return str(samples[index][0])
    filename = getattr(dataset, "filename", None)
    if callable(filename):
        return str(filename(index))
    return f"number {index} of the dataset"


def _file_backed(dataset: Dataset) -> bool:
    if isinstance(dataset, IterableDataset):  # a stream is read in order, not by index
        return False
    if isinstance(dataset, Subset):
        return _file_backed(dataset.dataset)
    return hasattr(dataset, "samples") or callable(getattr(dataset, "filename", None))


class EvalShardSampler(Sampler[int]):
    """Indices rank, rank + world_size, ... in order: disjoint, unpadded eval shards.

    DistributedSampler pads with repeated images so that ranks get equal counts,
    which biases metrics; summing correct/total over ranks here counts each image once.

    Args:
        dataset: The eval dataset.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(self, dataset: Sized, rank: int, world_size: int) -> None:
        self.indices = range(rank, len(dataset), world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loaders(
    train_ds: Dataset,
    eval_ds: Dataset,
    data: DataSpec,
    seed: int,
    distributed: bool = False,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[DataLoader, DataLoader]:
    """Train and eval loaders. `data.batch_size` is per process, as in timm.

    The train loader shuffles with a generator seeded by `seed` (so two builds give the
    same order, and each epoch a new one) and drops the last partial batch. Under
    `distributed`, a DistributedSampler shards it; call `loader.sampler.set_epoch(epoch)`
    each epoch. Worker RNGs derive from the loader's generator, so augmentation is
    reproducible too.

    Args:
        train_ds: Training dataset.
        eval_ds: Evaluation dataset.
        data: The data section of a spec (batch sizes, num_workers).
        seed: Seed of the shuffle and of the worker RNGs.
        distributed: Shard both datasets over `world_size` processes.
        rank: This process's rank.
        world_size: Number of processes.

    Returns:
        `(train_loader, eval_loader)`.

    Raises:
        DataError: The training set is smaller than one batch per process.
    """
    per_rank = len(train_ds) // world_size if distributed else len(train_ds)  # type: ignore[arg-type]
    if per_rank < data.batch_size:
        raise DataError(
            f"the training set has {len(train_ds)} images ({per_rank} per process), fewer than "  # type: ignore[arg-type]
            f"data.batch_size = {data.batch_size}; with drop_last no batch would remain. "
            "Lower data.batch_size or use more data."
        )
    if _file_backed(train_ds):  # (the eval loader wraps its own dataset)
        train_ds = NamedReadErrors(train_ds)
    common = _loader_options(data)
    if isinstance(train_ds, IterableDataset):
        # Streamed data (wds, hfds streaming): timm's readers shuffle, and shard over ranks
        # and workers, themselves; `set_epoch` reseeds their shuffle (see reseed_loader).
        for ds in (train_ds, eval_ds):
            if hasattr(ds, "set_loader_cfg"):
                ds.set_loader_cfg(num_workers=data.num_workers)
        train_sampler = None
    elif distributed:
        train_sampler = DistributedSampler(
            train_ds, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
    else:
        train_sampler = None

    train_loader = DataLoader(
        train_ds,
        batch_size=data.batch_size,
        shuffle=train_sampler is None and not isinstance(train_ds, IterableDataset),
        sampler=train_sampler,
        drop_last=True,
        # Ranks get different worker seeds; the shuffle itself is seeded by the sampler.
        generator=torch.Generator().manual_seed(seed + rank),
        **common,
    )
    eval_loader = build_eval_loader(eval_ds, data, seed, distributed, rank, world_size)
    return train_loader, eval_loader


def build_eval_loader(
    dataset: Dataset, data: DataSpec, seed: int, distributed: bool = False, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """An evaluation loader: in order, nothing dropped; under `distributed`, disjoint unpadded shards.

    Args:
        dataset: The validation or test dataset.
        data: The data section of a spec (eval batch size, num_workers).
        seed: Seed of the worker RNGs.
        distributed: Shard over `world_size` processes.
        rank: This process's rank.
        world_size: Number of processes.
    """
    if _file_backed(dataset):
        dataset = NamedReadErrors(dataset)
    streamed = isinstance(dataset, IterableDataset)  # a stream shards itself
    sampler = EvalShardSampler(dataset, rank, world_size) if distributed and not streamed else None  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=data.eval_batch_size or data.batch_size,
        shuffle=False,
        sampler=sampler,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed + rank),
        **_loader_options(data),
    )


def _loader_options(data: DataSpec) -> dict:
    options: dict = {"num_workers": data.num_workers, "pin_memory": torch.cuda.is_available()}
    if data.num_workers > 0:
        options |= {"persistent_workers": True, "prefetch_factor": 4}
    return options
