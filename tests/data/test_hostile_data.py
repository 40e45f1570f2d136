"""Hostile data: symlink cycles, empty class folders, budgets beyond the data, bad images, no network.

Every dataset is made in tmp_path; nothing is downloaded (the Hub's address is a
closed local port).
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tasgen.data import DataError, build_datasets
from tasgen.spec import SpecError
from tasgen.spec.dataset_classes import count_classes
from tasgen.spec.hub import HubUnreachable
from tasgen.spec.image_folder import ImageFolderError
from tasgen.spec.load import check_data_root, load_spec
from tasgen.spec.schema import DataSpec

from ..train.conftest import spec_dict

needs_datasets = pytest.mark.skipif(importlib.util.find_spec("datasets") is None,
                                    reason="Hugging Face datasets is an optional extra (pip install 'tasgen[hf]')")


def _write_images(folder: Path, classes: dict[str, int], suffix: str = ".png") -> None:
    rng = np.random.default_rng(0)
    for cls, count in classes.items():
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)).save(folder / cls / f"{i}{suffix}")


def _folders(root: Path, per_class: int = 4) -> None:
    _write_images(root / "train", {"ant": per_class, "bee": per_class, "cow": per_class})
    _write_images(root / "val", {"ant": 1, "bee": 1, "cow": 1})


def _data(root: Path, **over) -> DataSpec:
    return DataSpec.model_validate({"dataset": "imagefolder", "root": str(root), "image_size": 16, "batch_size": 2,
                                    "val_fraction": 0, **over})


# ------------------------------------------------------------ symlink cycles
def test_a_symlink_cycle_is_refused_with_its_path(tmp_path: Path) -> None:
    _folders(tmp_path)
    loop = tmp_path / "train" / "ant" / "again"
    os.symlink(tmp_path / "train", loop)  # train/ant/again -> train: 12 images would become hundreds
    with pytest.raises(DataError, match="symlink|leads back") as err:
        build_datasets(_data(tmp_path))
    assert str(loop) in str(err.value) and str(tmp_path / "train") in str(err.value)
    with pytest.raises(ImageFolderError, match=str(loop)):
        count_classes(_data(tmp_path))


def test_two_links_to_one_folder_are_refused(tmp_path: Path) -> None:
    _folders(tmp_path)
    os.symlink(tmp_path / "train" / "ant", tmp_path / "train" / "ant2")  # ant's images twice, as two classes
    _write_images(tmp_path / "val", {"ant2": 1})
    with pytest.raises(DataError, match="is the same folder as"):
        build_datasets(_data(tmp_path))


def test_a_link_that_never_resolves_is_refused(tmp_path: Path) -> None:
    _folders(tmp_path)
    os.symlink(tmp_path / "train" / "ant" / "b.png", tmp_path / "train" / "ant" / "a.png")
    os.symlink(tmp_path / "train" / "ant" / "a.png", tmp_path / "train" / "ant" / "b.png")
    with pytest.raises(DataError, match=r"ant/a.png is a symlink loop"):
        build_datasets(_data(tmp_path))


def test_the_scan_reads_what_timm_reads(tmp_path: Path) -> None:
    # Same images, order and class indices as timm's reader: runs and teachers from before keep their labels.
    from timm.data.readers.reader_image_folder import find_images_and_targets

    from tasgen.spec.image_folder import scan_class_folders

    _write_images(tmp_path / "train", {"cls10": 2, "cls2": 3, "Bee": 1}, suffix=".JPG")
    _write_images(tmp_path / "train" / "cls2", {"nested": 2})
    _write_images(tmp_path / "elsewhere", {"linked": 2})
    os.symlink(tmp_path / "elsewhere" / "linked", tmp_path / "train" / "linked")
    (tmp_path / "train" / "img12.png").write_bytes(b"")
    (tmp_path / "train" / "Bee" / "notes.txt").write_text("")
    found = scan_class_folders(tmp_path / "train")
    assert (found.samples, found.class_to_idx) == find_images_and_targets(str(tmp_path / "train"))


def test_a_symlinked_class_folder_is_still_read(tmp_path: Path) -> None:
    _folders(tmp_path)
    _write_images(tmp_path / "elsewhere", {"dog": 4})
    _write_images(tmp_path / "val", {"dog": 1})
    os.symlink(tmp_path / "elsewhere" / "dog", tmp_path / "train" / "dog")
    built = build_datasets(_data(tmp_path))
    assert (built.info.num_classes, built.info.num_train, built.info.num_test) == (4, 16, 4)


# ------------------------------------------------------------ empty class folders and budgets
def test_an_empty_class_folder_is_refused_not_counted(tmp_path: Path) -> None:
    _folders(tmp_path)
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    assert count_classes(_data(tmp_path))[0] == 3  # what the reader sees, not 4
    with pytest.raises(DataError, match=r"class folders without images \(dog\)"):
        build_datasets(_data(tmp_path))


def test_a_budget_beyond_the_training_images_is_refused(tmp_path: Path) -> None:
    _folders(tmp_path)
    with pytest.raises(DataError, match="train_samples = 13 is more than the 12 training images") as err:
        build_datasets(_data(tmp_path, train_samples=13))
    assert err.value.key == ("data", "train_samples")
    assert build_datasets(_data(tmp_path, train_samples=12)).info.num_train == 12
    synthetic = DataSpec(dataset="synthetic", num_samples=64, train_samples=500)
    with pytest.raises(DataError, match="at most"):
        build_datasets(synthetic)
    assert build_datasets(synthetic, budget=False).info.num_train > 0  # a teacher fit has no budget


@pytest.mark.skipif(importlib.util.find_spec("webdataset") is None, reason="webdataset is an optional extra")
def test_a_budget_on_a_stream_is_refused(tmp_path: Path) -> None:
    from .test_timm_datasets import _write_shards

    splits = {split: _write_shards(tmp_path, split, 2, shards=1) for split in ("train", "validation")}
    (tmp_path / "_info.json").write_text(json.dumps({"num_classes": 3, "splits": splits}))
    data = DataSpec(dataset="wds", root=tmp_path, image_size=16, batch_size=2)
    assert build_datasets(data).info.num_train == 6
    with pytest.raises(DataError, match="cannot be drawn from wds: it is streamed") as err:
        build_datasets(data.model_copy(update={"train_samples": 4}))  # it trained on all 6 before
    assert err.value.key == ("data", "train_samples")


# ------------------------------------------------------------ bad images: skipped, named
def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (PIL checks the size before decoding)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _truncated_jpeg() -> bytes:
    out = io.BytesIO()
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(out, format="JPEG")
    return out.getvalue()[: len(out.getvalue()) // 2]


@pytest.mark.parametrize("bad", ["bomb", "bomb-warning", "truncated", "dangling-link"])
def test_an_unreadable_image_is_skipped_with_its_file_named(tmp_path: Path, caplog, bad: str) -> None:
    _folders(tmp_path)
    name = "1.jpg" if bad == "truncated" else "1.png"
    file = tmp_path / "train" / "bee" / name
    (tmp_path / "train" / "bee" / "1.png").unlink()
    if bad == "dangling-link":
        os.symlink(tmp_path / "gone.png", file)
    else:  # above 2x PIL's limit it refuses to open; between 1x and 2x it only warns, naming no file
        file.write_bytes({"bomb": _png_header_only(16000, 16000), "bomb-warning": _png_header_only(10000, 10000),
                          "truncated": _truncated_jpeg()}[bad])
    train = build_datasets(_data(tmp_path)).train
    position = next(i for i, index in enumerate(train.indices) if train.dataset.reader.samples[index][0] == str(file))
    with caplog.at_level(logging.WARNING):
        image, label = train[position]  # the next image takes its place
        train[position]
    assert image.shape == (3, 16, 16) and label == 1
    warnings = [r.getMessage() for r in caplog.records if str(file) in r.getMessage()]
    assert len(warnings) == 1, caplog.text  # once per file
    reason = {"bomb": "pixels", "bomb-warning": "pixels", "truncated": "truncated", "dangling-link": "No such file"}
    assert "skipped" in warnings[0] and reason[bad] in warnings[0]


def test_many_unreadable_images_in_a_row_stop_with_a_data_error(tmp_path: Path) -> None:
    _folders(tmp_path, per_class=11)
    for file in (tmp_path / "train" / "ant").iterdir():
        file.write_bytes(b"\x89PNG not an image")
    train = build_datasets(_data(tmp_path)).train
    with pytest.raises(DataError, match="10 images in a row cannot be read"):
        train[0]


def test_images_in_a_tar_are_named_by_archive_and_member(tmp_path: Path, caplog) -> None:
    with tarfile.open(tmp_path / "train.tar", "w") as tar, tarfile.open(tmp_path / "val.tar", "w") as val:
        for archive, count in ((tar, 3), (val, 1)):
            for cls in ("ant", "bee"):
                for i in range(count):
                    payload = b"\x89PNG broken" if (archive is tar and cls == "ant" and i == 0) else _png(cls)
                    member = tarfile.TarInfo(f"{cls}/{i}.png")
                    member.size = len(payload)
                    archive.addfile(member, io.BytesIO(payload))
    train = build_datasets(_data(tmp_path)).train
    with caplog.at_level(logging.WARNING):
        train[next(i for i, index in enumerate(train.indices) if train.dataset.filename(index) == "ant/0.png")]
    assert f"{tmp_path / 'train.tar'}:ant/0.png" in caplog.text


def _png(cls: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 24), (200, 0, 0) if cls == "ant" else (0, 200, 0)).save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------ the spec's data check: every layout the data code reads
def _spec_file(tmp_path: Path, root: Path, **data) -> Path:
    spec = spec_dict(tmp_path, data={"dataset": "imagefolder", "root": str(root), **data})
    spec["data"].pop("num_samples")
    file = tmp_path / "spec.yaml"
    file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return file


def test_the_data_check_accepts_tar_files_and_custom_split_names(tmp_path: Path) -> None:
    tars = tmp_path / "tars"
    tars.mkdir()
    for split in ("train", "val"):
        with tarfile.open(tars / f"{split}.tar", "w") as tar:
            for cls in ("ant", "bee"):
                member = tarfile.TarInfo(f"{cls}/0.png")
                payload = _png(cls)
                member.size = len(payload)
                tar.addfile(member, io.BytesIO(payload))
    check_data_root(load_spec(_spec_file(tmp_path, tars)))
    custom = tmp_path / "custom"
    _write_images(custom / "fit", {"ant": 1, "bee": 1})
    _write_images(custom / "holdout", {"ant": 1, "bee": 1})
    check_data_root(load_spec(_spec_file(tmp_path, custom, train_split="fit", eval_split="holdout")))
    _write_images(custom / "training", {"ant": 1, "bee": 1})  # timm's synonym of train
    _write_images(custom / "validation", {"ant": 1, "bee": 1})
    check_data_root(load_spec(_spec_file(tmp_path, custom)))


def test_the_data_check_still_catches_what_cannot_be_read(tmp_path: Path) -> None:
    def problem(root: Path, **data) -> str:
        with pytest.raises(SpecError) as err:
            check_data_root(load_spec(_spec_file(tmp_path, root, **data)))
        assert "spec.yaml:" in str(err.value)
        return str(err.value)

    assert "does not exist" in problem(tmp_path / "nowhere")
    root = tmp_path / "root"
    (root / "train" / "ant").mkdir(parents=True)
    (root / "val" / "ant").mkdir(parents=True)
    (root / "train" / "ant" / "a.txt").write_text("text")
    assert "holds no images" in problem(root)
    _write_images(root / "train", {"ant": 1, "bee": 1})
    assert "has no fit/" in problem(root, train_split="fit")
    (root / "val.tar").write_text("not a tar")
    (root / "val" / "ant").rmdir()
    (root / "val").rmdir()
    assert "not a tar archive" in problem(root)


# ------------------------------------------------------------ a Hub dataset without a network
@pytest.fixture
def no_hub(monkeypatch) -> None:
    """The Hub's address is a closed port on this machine: every connection is refused at once."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


@needs_datasets
def test_no_network_is_the_message_not_num_classes(no_hub, monkeypatch) -> None:
    import datasets

    def must_not_retry(*args, **kwargs):
        raise AssertionError("datasets was asked (and would retry for half a minute)")

    monkeypatch.setattr(datasets, "load_dataset_builder", must_not_retry)
    data = DataSpec(dataset="hfds", name="someone/beans")
    with pytest.raises(HubUnreachable, match=r"cannot read hfds 'someone/beans' from the Hugging Face Hub: "
                                             r"127.0.0.1:9 cannot be reached"):
        count_classes(data)
    with pytest.raises(DataError, match="from the Hugging Face Hub") as err:
        build_datasets(data)
    assert err.value.key == ("data", "name")  # `tasgen train` reports it at that line


def test_a_path_is_not_taken_for_a_hub_id(no_hub, tmp_path: Path) -> None:
    from tasgen.spec.hub import hub_problem

    assert "cannot be reached" in hub_problem("someone/beans")
    for path in (str(tmp_path / "missing"), "./data/beans", "~/beans", "a/b/c"):
        assert hub_problem(path) is None, path  # datasets reports a missing folder itself, at once


@needs_datasets
def test_a_missing_local_dataset_is_named_not_num_classes(no_hub, tmp_path: Path) -> None:
    from tasgen.spec.dataset_classes import DatasetNotFound

    with pytest.raises(DatasetNotFound, match=f"hfds '{tmp_path / 'missing'}' not found"):
        count_classes(DataSpec(dataset="hfds", name=str(tmp_path / "missing")))


@needs_datasets
def test_offline_mode_without_the_dataset_in_the_cache_says_so(tmp_path: Path, monkeypatch) -> None:
    import datasets
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # Read when they are imported (earlier in this process): a user sets the variable before starting tasgen.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(HubUnreachable, match="Offline mode is on .* not in the Hugging Face cache"):
        count_classes(DataSpec(dataset="hfds", name="someone/beans", root=tmp_path / "cache"))
