"""Datasets through timm's factory: image folders and tars, Hugging Face (local parquet and image folders), WebDataset.

Every dataset is written into tmp_path; nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasgen.data import DataError, build_datasets, build_loaders
from tasgen.spec.dataset_classes import count_classes
from tasgen.spec.schema import DataSpec

needs_datasets = pytest.mark.skipif(importlib.util.find_spec("datasets") is None,
                                    reason="Hugging Face datasets is an optional extra (pip install 'tasgen[hf]')")
needs_webdataset = pytest.mark.skipif(importlib.util.find_spec("webdataset") is None,
                                      reason="webdataset is an optional extra (pip install 'tasgen[webdataset]')")
CLASSES = ("ant", "bee", "cow")



def _splits(data: DataSpec):
    """(train, test, info) with no validation carve, so the counts are the files'."""
    built = build_datasets(data.model_copy(update={"val_fraction": 0}))
    return built.train, built.test, built.info

def _image(label: int, seed: int) -> Image.Image:
    """A 20x24 image whose mean colour says its class."""
    rng = np.random.default_rng(seed)
    base = np.zeros((20, 24, 3), dtype=np.int16)
    base[..., label] = 200
    return Image.fromarray(np.clip(base + rng.integers(0, 40, size=base.shape), 0, 255).astype(np.uint8))


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def _samples(split: str, per_class: int):
    offset = 0 if split == "train" else 1000
    return [(c, i, _image(c, offset + 10 * c + i)) for c in range(len(CLASSES)) for i in range(per_class)]


def _check(train, evaluate, data: DataSpec, n_train: int, n_eval: int) -> None:
    assert (len(train), len(evaluate)) == (n_train, n_eval)
    loader_t, loader_e = build_loaders(train, evaluate, data, seed=0)
    images, labels = next(iter(loader_e))
    assert images.shape[1:] == (3, data.image_size, data.image_size) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    # The class is the dominant colour channel: labels and pixels belong together.
    assert torch.equal(images.mean(dim=(2, 3)).argmax(dim=1), labels)
    seen = torch.cat([y for _, y in loader_t])
    assert set(seen.tolist()) <= set(range(len(CLASSES)))


# ------------------------------------------------------------ folders and tars
def _write_folder(folder: Path, split: str, per_class: int) -> None:
    for c, i, img in _samples(split, per_class):
        (folder / CLASSES[c]).mkdir(parents=True, exist_ok=True)
        img.save(folder / CLASSES[c] / f"{i}.png")


@pytest.mark.parametrize("eval_name", ["val", "validation", "eval"])
def test_image_folders(tmp_path: Path, eval_name: str) -> None:
    _write_folder(tmp_path / "train", "train", 4)
    _write_folder(tmp_path / eval_name, "val", 2)
    data = DataSpec(dataset="imagefolder", root=tmp_path, image_size=16, batch_size=4, augment={"hflip": 0})
    train, evaluate, info = _splits(data)
    assert info.num_classes == 3 == count_classes(data)[0]
    _check(train, evaluate, data, 12, 6)


def test_image_folder_validation_is_carved_from_train_with_eval_transforms(tmp_path: Path) -> None:
    _write_folder(tmp_path / "train", "train", 4)
    _write_folder(tmp_path / "val", "val", 2)
    data = DataSpec(dataset="imagefolder", root=tmp_path, image_size=16, batch_size=4, val_fraction=0.25,
                    augment={"hflip": 1.0})
    built = build_datasets(data)
    assert (built.info.num_train, built.info.num_val, built.info.num_test) == (9, 3, 6)
    # Stratified over the 3 classes, and read without augmentation (hflip 1.0 would flip it).
    assert sorted(int(built.val[i][1]) for i in range(3)) == [0, 1, 2]
    unflipped = build_datasets(DataSpec.model_validate({**data.model_dump(), "augment": {"hflip": 0.0}}))
    assert torch.equal(built.val[0][0], unflipped.val[0][0])
    assert not torch.equal(built.train[0][0], unflipped.train[0][0])


def test_tar_files(tmp_path: Path) -> None:
    for split, per_class in (("train", 4), ("val", 2)):
        with tarfile.open(tmp_path / f"{split}.tar", "w") as tar:
            for c, i, img in _samples(split, per_class):
                payload = _png(img)
                member = tarfile.TarInfo(f"{CLASSES[c]}/{i}.png")
                member.size = len(payload)
                tar.addfile(member, io.BytesIO(payload))
    data = DataSpec(dataset="imagefolder", root=tmp_path, image_size=16, batch_size=4, augment={"hflip": 0})
    assert count_classes(data) == (3, str(tmp_path / "train.tar"))
    train, evaluate, info = _splits(data)
    assert info.num_classes == 3
    _check(train, evaluate, data, 12, 6)


def test_custom_split_names(tmp_path: Path) -> None:
    _write_folder(tmp_path / "fit", "train", 2)
    _write_folder(tmp_path / "holdout", "val", 1)
    data = DataSpec(dataset="imagefolder", root=tmp_path, image_size=16, batch_size=2, train_split="fit",
                    eval_split="holdout")
    train, evaluate, info = _splits(data)
    assert (info.num_train, info.num_eval, info.num_classes) == (6, 3, 3)
    with pytest.raises(DataError, match=r"has no nope/ \(or nope.tar\)"):
        build_datasets(data.model_copy(update={"eval_split": "nope"}))


# ------------------------------------------------------------ Hugging Face
def _hf_dataset(split: str, per_class: int):
    import datasets

    rows = _samples(split, per_class)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    return datasets.Dataset.from_dict({"image": [img for _, _, img in rows], "label": [c for c, _, _ in rows]},
                                      features=features)


@needs_datasets
@pytest.mark.parametrize("streaming", [False, True], ids=["hfds", "hfids-streaming"])
def test_hf_local_parquet_folder(tmp_path: Path, streaming: bool, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "beans"
    folder.mkdir()
    _hf_dataset("train", 4).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    _hf_dataset("val", 2).to_parquet(str(folder / "validation-00000-of-00001.parquet"))
    data = DataSpec(dataset="hfds", name=str(folder), root=tmp_path / "cache", image_size=16, batch_size=4,
                    streaming=streaming, augment={"hflip": 0})
    assert count_classes(data)[0] == 3
    train, evaluate, info = _splits(data)
    assert info.num_classes == 3
    if streaming:
        assert isinstance(train, torch.utils.data.IterableDataset)
        loader_t, loader_e = build_loaders(train, evaluate, data, seed=0)
        images, labels = next(iter(loader_e))
        assert images.shape[1:] == (3, 16, 16)
        assert torch.equal(images.mean(dim=(2, 3)).argmax(dim=1), labels)
    else:
        _check(train, evaluate, data, 12, 6)


@needs_datasets
def test_hf_local_image_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "pictures"
    _write_folder(folder / "train", "train", 4)
    _write_folder(folder / "validation", "val", 2)
    data = DataSpec(dataset="hfds", name=str(folder), image_size=16, batch_size=4, augment={"hflip": 0})
    assert count_classes(data)[0] == 3
    train, evaluate, _ = _splits(data)
    _check(train, evaluate, data, 12, 6)


@needs_datasets
def test_hf_missing_dataset_or_split_is_a_data_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "beans"
    folder.mkdir()
    _hf_dataset("train", 2).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    data = DataSpec(dataset="hfds", name=str(folder), image_size=16, batch_size=2)
    with pytest.raises(DataError, match=r"cannot load hfds '.*beans' split 'validation'"):
        build_datasets(data)


# ------------------------------------------------------------ WebDataset
def _write_shards(root: Path, split: str, per_class: int, shards: int) -> dict:
    import webdataset as wds

    rows = _samples(split, per_class)
    names, lengths = [], []
    for s in range(shards):
        name = f"{split}-{s:04d}.tar"
        part = rows[s::shards]
        with wds.TarWriter(str(root / name)) as sink:
            for c, i, img in part:
                sink.write({"__key__": f"{split}{c}_{i}", "png": _png(img), "cls": str(c).encode()})
        names.append(name)
        lengths.append(len(part))
    return {"name": split, "num_samples": sum(lengths), "filenames": names, "shard_lengths": lengths}


@needs_webdataset
def test_webdataset_shards(tmp_path: Path) -> None:
    splits = {"train": _write_shards(tmp_path, "train", 4, shards=2),
              "validation": _write_shards(tmp_path, "validation", 2, shards=1)}
    (tmp_path / "_info.json").write_text(json.dumps({"name": "toy", "num_classes": 3, "splits": splits}))
    data = DataSpec(dataset="wds", root=tmp_path, image_size=16, batch_size=4, augment={"hflip": 0})
    assert count_classes(data)[0] == 3
    train, evaluate, info = _splits(data)
    assert isinstance(train, torch.utils.data.IterableDataset) and info.num_classes == 3
    loader_t, loader_e = build_loaders(train, evaluate, data, seed=0)
    images, labels = next(iter(loader_e))
    assert images.shape[1:] == (3, 16, 16) and torch.equal(images.mean(dim=(2, 3)).argmax(dim=1), labels)
    assert sum(y.numel() for _, y in loader_e) == 6  # every held-out sample once
    assert len(loader_t) == 3 and sum(1 for _ in loader_t) == 3
    with pytest.raises(DataError, match="split 'test'"):
        build_datasets(data.model_copy(update={"eval_split": "test"}))


@needs_webdataset
def test_webdataset_trains_end_to_end(tmp_path: Path, make_spec) -> None:
    from tasgen.train import train

    shards = tmp_path / "shards"
    shards.mkdir()
    splits = {"train": _write_shards(shards, "train", 6, shards=2),
              "validation": _write_shards(shards, "validation", 2, shards=1)}
    (shards / "_info.json").write_text(json.dumps({"num_classes": 3, "splits": splits}))
    loaded = make_spec(num_classes=3, data={"dataset": "wds", "root": str(shards), "batch_size": 6},
                       distill={"method": "none"}, train={"epochs": 1})
    result = train(loaded, quiet=True)
    assert result.finished and 0 <= result.last["student_top1"] <= 100


# ------------------------------------------------------------ the spec fields
def test_data_fields_are_validated(tmp_path: Path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs 'name'"):
        DataSpec(dataset="hfds")
    with pytest.raises(ValidationError, match="'name' only applies to dataset 'hfds'"):
        DataSpec(dataset="imagefolder", root=tmp_path, name="x")
    with pytest.raises(ValidationError, match="'streaming' only applies to hfds and wds"):
        DataSpec(dataset="imagefolder", root=tmp_path, streaming=True)
    with pytest.raises(ValidationError, match="needs 'root'"):
        DataSpec(dataset="wds")
    with pytest.raises(ValidationError, match="at least 1 character"):
        DataSpec(dataset="imagefolder", root=tmp_path, train_split="")


@pytest.mark.parametrize("dataset, package, extra", [("wds", "webdataset", "webdataset"), ("hfds", "datasets", "hf")])
def test_a_missing_reader_package_is_named_with_its_extra(dataset: str, package: str, extra: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tasgen.data import timm_datasets

    real = timm_datasets.importlib.import_module

    def without(name: str, *args):  # noqa: ANN202 - the package is not installed
        if name == package:
            raise ImportError(f"No module named {name!r}")
        return real(name, *args)

    monkeypatch.setattr(timm_datasets.importlib, "import_module", without)
    named = {"name": "some/dataset"} if dataset == "hfds" else {"root": tmp_path}
    data = DataSpec(dataset=dataset, image_size=16, batch_size=4, **named)
    with pytest.raises(DataError, match=rf"dataset '{dataset}' needs .* pip install 'tasgen\[{extra}\]'"):
        build_datasets(data)
