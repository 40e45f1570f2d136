"""tools/idx_to_folder.py: MNIST-format files become an image-folder tree tasgen trains on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.tools import idx_dataset, load_tool, write_idx_set


def test_first_images_of_each_class_land_in_train_and_val(tmp_path: Path, capsys) -> None:
    tool = load_tool("idx_to_folder")
    rng = np.random.default_rng(0)
    train_images, train_labels = idx_dataset(rng, 40, 4)
    test_images, test_labels = idx_dataset(rng, 12, 4)
    raw = tmp_path / "src" / "FashionMNIST" / "raw"  # torchvision's layout, gzipped training and plain test files
    write_idx_set(raw, "train", train_images, train_labels, gz=True)
    write_idx_set(raw, "t10k", test_images, test_labels, gz=False)
    out = tmp_path / "tree"
    assert tool.main([str(tmp_path / "src"), str(out), "--train-per-class", "3", "--test-per-class", "2"]) == 0
    assert "train: 12 images, 4 classes" in capsys.readouterr().out
    for split, per_class, images, labels in (("train", 3, train_images, train_labels),
                                             ("val", 2, test_images, test_labels)):
        assert sorted(p.name for p in (out / split).iterdir()) == ["00", "01", "02", "03"]
        for c in range(4):
            files = sorted((out / split / f"{c:02d}").iterdir())
            expected = [i for i in range(len(labels)) if labels[i] == c][:per_class]  # file order
            assert [int(f.stem) for f in files] == expected
            for f, i in zip(files, expected, strict=True):
                np.testing.assert_array_equal(np.asarray(Image.open(f)), images[i])

    # tasgen reads the tree: validation carved from train/, test is val/.
    from tasgen.data.datasets import build_datasets
    from tasgen.spec.schema import DataSpec

    splits = build_datasets(DataSpec(dataset="imagefolder", root=out, image_size=16, val_fraction=0.25))
    assert splits.info.num_classes == 4 and splits.info.num_test == 8
    assert splits.info.num_train + splits.info.num_val == 12 and splits.info.num_val > 0
    image, label = splits.train[0]
    assert tuple(image.shape) == (3, 16, 16) and 0 <= label < 4


@pytest.mark.parametrize(("damage", "words"), [
    (lambda b: b[:-5], "bytes, but its header"),
    (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
    (lambda b: b[:6], "truncated header"),
])
def test_damaged_files_are_named_and_nothing_is_written(tmp_path: Path, capsys, damage, words: str) -> None:
    tool = load_tool("idx_to_folder")
    images, labels = idx_dataset(np.random.default_rng(1), 8, 2)
    write_idx_set(tmp_path / "src", "train", images, labels, gz=False)
    write_idx_set(tmp_path / "src", "t10k", images, labels, gz=False)
    path = tmp_path / "src" / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    assert tool.main([str(tmp_path / "src"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}" in err and words in err and "Traceback" not in err
    assert not (tmp_path / "out" / "train").exists() or not any((tmp_path / "out" / "train").rglob("*.png"))


def test_missing_files_and_an_existing_tree_are_refused(tmp_path: Path, capsys) -> None:
    tool = load_tool("idx_to_folder")
    (tmp_path / "empty").mkdir()
    assert tool.main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "no train-images-idx3-ubyte[.gz]" in capsys.readouterr().err
    (tmp_path / "out" / "train").mkdir(parents=True)
    assert tool.main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "exists already" in capsys.readouterr().err
