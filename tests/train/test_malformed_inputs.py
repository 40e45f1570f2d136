"""Malformed specs and damaged run folders: every one exits 2 with one located message, no traceback.

Each case builds its input in a fresh folder and names the CLI command to run on it.
Spec problems must be located as ``file:line:col``; run-folder problems must name
the damaged file.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tasgen_cli.app import app

from .conftest import spec_dict

LOCATED = re.compile(r"(^|error: )\S+:\d+:\d+: ", re.MULTILINE)


def _base(tmp: Path, teacher: Path) -> str:
    return yaml.safe_dump(spec_dict(tmp, teacher={"checkpoint": str(teacher)}), sort_keys=False)


def _spec(text_change: Callable[[str], str], command: str = "validate") -> Callable[[Path, Path, Path], list[str]]:
    """A case: the base spec with ``text_change`` applied, checked by ``command``."""

    def build(tmp: Path, teacher: Path, run: Path) -> list[str]:
        text = text_change(_base(tmp, teacher))
        (tmp / "spec.yaml").write_text(text, encoding="utf-8")
        return [command, "spec.yaml"]

    return build


def _sub(old: str, new: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return change


def _spec_file(make: Callable[[Path], None]) -> Callable[[Path, Path, Path], list[str]]:
    """A case where the spec path itself is odd (a loop, a device, a folder...)."""

    def build(tmp: Path, teacher: Path, run: Path) -> list[str]:
        make(tmp)
        return ["validate", "spec.yaml"]

    return build


def _extends(target: str) -> Callable[[Path, Path, Path], list[str]]:
    return _spec(lambda text: f"extends: {target}\n" + text)


def _symlink_loop(tmp: Path) -> None:
    os.symlink(tmp / "b.yaml", tmp / "spec.yaml")
    os.symlink(tmp / "spec.yaml", tmp / "b.yaml")


def _folder_run(damage: Callable[[Path], None], command: str = "eval") -> Callable[[Path, Path, Path], list[str]]:
    """A case: a copy of a trained run folder, damaged, then read by ``command`` (eval, export, resume)."""

    def build(tmp: Path, teacher: Path, run: Path) -> list[str]:
        copy = tmp / "runs" / "run"
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".lock"))
        damage(copy)
        if command == "eval":
            return ["eval", str(copy)]
        if command == "export":
            return ["export", str(copy), "-o", str(tmp / "out.safetensors")]
        (tmp / "spec.yaml").write_text(_base(tmp, teacher))  # output_dir = tmp/runs, name = run
        return ["train", "spec.yaml", "--resume"] if command == "resume" else ["train", "spec.yaml"]

    return build


def _flip(name: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        file = run / name
        data = bytearray(file.read_bytes())
        data[-64:] = bytes(b ^ 0xFF for b in data[-64:])
        file.write_bytes(bytes(data))

    return damage


def _write(name: str, text: str) -> Callable[[Path], None]:
    return lambda run: (run / name).write_text(text)


def _remove(name: str) -> Callable[[Path], None]:
    return lambda run: (run / name).unlink()


def _image_folder(make: Callable[[Path], None]) -> Callable[[Path, Path, Path], list[str]]:
    def change(text: str) -> str:
        return text.replace("dataset: synthetic", "dataset: imagefolder\n  root: images")

    def build(tmp: Path, teacher: Path, run: Path) -> list[str]:
        make(tmp / "images")
        (tmp / "spec.yaml").write_text(change(_base(tmp, teacher)) + "num_classes: 10\n")
        return ["train", "spec.yaml"]

    return build


def _images_with_a_corrupt_one(root: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in (("a", (255, 0, 0)), ("b", (0, 0, 255))):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(12):
                Image.new("RGB", (32, 32), colour).save(folder / f"{i}.png")
    (root / "train" / "a" / "5.png").write_bytes(b"\x89PNG not an image at all")
    # A PNG whose header claims 16000x16000 pixels: PIL's decompression-bomb check refuses to open it.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 16000, 16000, 8, 2, 0, 0, 0)
    (root / "train" / "b" / "7.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                                                  + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b""))


def _classes(count: int) -> Callable[[Path], None]:
    """``count`` classes of one small image each, in train/ and val/."""
    def make(root: Path) -> None:
        from PIL import Image

        for split in ("train", "val"):
            for c in range(count):
                (root / split / f"c{c}").mkdir(parents=True)
                Image.new("RGB", (8, 8), (c, 0, 0)).save(root / split / f"c{c}" / "0.png")

    return make


def _with_a_symlink_cycle(root: Path) -> None:
    _classes(2)(root)
    os.symlink(root / "train", root / "train" / "c0" / "again")


def _with_an_empty_class_folder(root: Path) -> None:
    _classes(2)(root)
    (root / "train" / "zz").mkdir()


NESTED = "[" * 5000 + "]" * 5000
CASES: dict[str, tuple[Callable[[Path, Path, Path], list[str]], str]] = {
    # ---- accepted-but-wrong values: strict types and bounds
    "epochs-true": (_spec(_sub("epochs: 2", "epochs: true")), "train.epochs"),
    "epochs-float": (_spec(_sub("epochs: 2", "epochs: 2.5")), "train.epochs"),
    "epochs-string": (_spec(_sub("epochs: 2", "epochs: '2'")), "train.epochs"),
    "name-binary": (_spec(_sub("name: run", "name: !!binary aGVsbG8=")), "name"),
    "seed-beyond-64-bits": (_spec(lambda t: t + f"seed: {2**64}\n"), "seed"),
    "seed-negative": (_spec(lambda t: t + "seed: -1\n"), "seed"),
    "ce-weight-huge": (_spec(lambda t: t.replace("distill:\n", "distill:\n  ce: {weight: 1.0e+30}\n")), "distill.ce.weight"),
    "ce-weight-nan": (_spec(lambda t: t.replace("distill:\n", "distill:\n  ce: {weight: .nan}\n")), "distill.ce.weight"),
    "lr-string": (_spec(_sub("lr: 0.05", "lr: '0.05'")), "train.optimizer.lr"),
    "batch-size-bool": (_spec(_sub("batch_size: 16", "batch_size: false")), "data.batch_size"),
    "randaugment-bad-section": (_spec(_sub("num_samples: 64", "num_samples: 64\n  augment: {randaugment: rand-x9}")),
                                "data.augment.randaugment"),
    "randaugment-not-rand": (_spec(_sub("num_samples: 64", "num_samples: 64\n  augment: {randaugment: augmix}")),
                             "data.augment.randaugment"),
    "randaugment-float-magnitude": (_spec(_sub("num_samples: 64", "num_samples: 64\n  augment: {randaugment: rand-m9.5}")),
                                    "data.augment.randaugment"),
    "num-classes-below-dataset": (_spec(lambda t: t + "num_classes: 5\n"), "num_classes"),
    "num-classes-one": (_spec(lambda t: t + "num_classes: 1\n"), "num_classes"),
    "eval-fraction-one": (_spec(_sub("num_samples: 64", "num_samples: 64\n  eval_fraction: 1.0")), "data.eval_fraction"),
    "unknown-dataset": (_spec(_sub("dataset: synthetic", "dataset: imagenet")), "data.dataset"),
    "unknown-key": (_spec(_sub("epochs: 2", "epoch: 2")), "did you mean 'epochs'"),
    "teacher-missing": (_spec(lambda t: t.replace("teacher:", "unused_teacher:", 1)), "unknown key"),
    "output-dir-number": (_spec(_sub("output_dir: ", "output_dir: 5\n  # ")), "train.output_dir"),
    "checkpoint-is-folder": (_spec(lambda t: re.sub(r"checkpoint: .*", "checkpoint: /tmp", t)), "teacher.checkpoint"),
    # ---- YAML that is hostile or broken
    "nested-5000-brackets": (_spec(lambda t: t + f"x: {NESTED}\n"), "nested too deeply"),
    "nested-5000-braces": (_spec(lambda t: t + "x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n"), "nested too deeply"),
    "nested-40-levels": (_spec(lambda t: t + "x:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 41)) + "  " * 41 + "1\n"),
                         "nested too deeply"),
    "billion-laughs": (_spec(lambda t: t + "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdef", "bcdefg", strict=True))), "too large"),
    "python-tag": (_spec(_sub("name: run", "name: !!python/object/apply:os.system [echo hacked]")), "not allowed"),
    "duplicate-key": (_spec(lambda t: t + "name: again\n"), "duplicate key"),
    "tab-indent": (_spec(_sub("  epochs: 2", "\tepochs: 2")), "invalid YAML"),
    "nul-character": (_spec(lambda t: t + "x: a\x00b\n"), "invalid YAML"),
    "not-utf8": (_spec_file(lambda tmp: (tmp / "spec.yaml").write_bytes(b"name: caf\xe9\n")), "not UTF-8"),
    "empty-file": (_spec_file(lambda tmp: (tmp / "spec.yaml").write_text("")), "empty file"),
    "a-list": (_spec_file(lambda tmp: (tmp / "spec.yaml").write_text("- a\n- b\n")), "got a list"),
    "too-large": (_spec_file(lambda tmp: (tmp / "spec.yaml").write_text("#" * (2 << 20))), "larger than 1 MiB"),
    # ---- odd spec files and bases
    "symlink-loop": (_spec_file(_symlink_loop), "symlink loop"),
    "fifo": (_spec_file(lambda tmp: os.mkfifo(tmp / "spec.yaml")), "not a regular file"),
    "spec-is-folder": (_spec_file(lambda tmp: (tmp / "spec.yaml").mkdir()), "is a folder"),
    "spec-missing": (_spec_file(lambda tmp: None), "not found"),
    "extends-dev-zero": (_extends("/dev/zero"), "not a regular file"),
    "extends-missing": (_extends("nowhere.yaml"), "not found"),
    "extends-folder": (_extends("/tmp"), "is a folder"),
    "extends-self": (_extends("spec.yaml"), "extends cycle"),
    # ---- checked when training starts
    "imagefolder-root-missing": (_image_folder(lambda root: None), "the image folder does not exist"),
    "imagefolder-root-empty": (_image_folder(lambda root: root.mkdir()), "has no train/"),
    "imagefolder-more-classes": (_image_folder(_classes(11)), "has 11 class folders, more than num_classes = 10"),
    "imagefolder-symlink-cycle": (_image_folder(_with_a_symlink_cycle), "leads back to the folder above it"),
    "imagefolder-empty-class-folder": (_image_folder(_with_an_empty_class_folder),
                                       "has 1 class folder without images (zz)"),
    "imagefolder-no-images": (_image_folder(lambda root: [(root / s / "a").mkdir(parents=True) for s in ("train", "val")]),
                              "holds no images"),
    "train-samples-beyond-the-data": (_spec(_sub("num_samples: 64", "num_samples: 64\n  train_samples: 1000"), "train"),
                                      "data.train_samples = 1000 is more than the"),
    "hfds-without-network": (_spec(_sub("dataset: synthetic", "dataset: hfds\n  name: someone/beans"), "plan"),
                             "from the Hugging Face Hub: 127.0.0.1:9 cannot be reached"),
    "hfds-without-network-train": (_spec(lambda t: _sub("dataset: synthetic", "dataset: hfds\n  name: someone/beans")(t)
                                         + "num_classes: 10\n", "train"),
                                   "from the Hugging Face Hub: 127.0.0.1:9 cannot be reached"),
    # ---- damaged run folders
    "run-spec-yaml-broken": (_folder_run(_write("spec.yaml", "name: [unclosed\n")), "spec.yaml:"),
    "run-spec-yaml-tag": (_folder_run(_write("spec.yaml", "name: !!python/name:os.system\n")), "spec.yaml:1:7"),
    "run-spec-yaml-nested": (_folder_run(_write("spec.yaml", f"name: {NESTED}\n"), "export"), "spec.yaml:"),
    "run-plan-json-broken": (_folder_run(_write("plan.json", "{"), "eval"), "plan.json"),
    "run-weights-flipped-eval": (_folder_run(_flip("best/model.safetensors")), "model.safetensors fails its integrity check"),
    "run-weights-flipped-export": (_folder_run(_flip("best/model.safetensors"), "export"),
                                   "model.safetensors fails its integrity check"),
    "run-weights-flipped-resume": (_folder_run(_flip("last/model.safetensors"), "resume"),
                                   "model.safetensors fails its integrity check"),
    "run-state-missing": (_folder_run(_remove("last/state.pt"), "resume"), "lacks state.pt"),
    "run-manifest-missing": (_folder_run(_remove("last/manifest.json"), "resume"), "has no manifest.json"),
    "run-manifest-broken": (_folder_run(_write("last/manifest.json", "{\"files\": 3}"), "resume"), "manifest.json is corrupt"),
    "run-no-checkpoint": (_folder_run(lambda run: [shutil.rmtree(run / n) for n in ("last", "best")]), "no checkpoint yet"),
    "run-fresh-over-a-run": (_folder_run(lambda run: None, "train"), "--overwrite starts over"),
}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, teacher_weights: Path) -> Path:
    """One epoch (of 2) of the tiny spec: the run folder the damaged copies start from."""
    from tasgen.spec.load import load_spec
    from tasgen.train import train

    tmp = tmp_path_factory.mktemp("trained")
    (tmp / "spec.yaml").write_text(_base(tmp, teacher_weights))
    return train(load_spec(tmp / "spec.yaml"), max_epochs=1, quiet=True).run_dir


def test_there_are_at_least_40_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input_exits_2_with_a_located_message(case, tmp_path, monkeypatch, teacher_weights, trained_run):
    build, expected = CASES[case]
    work = tmp_path / "case"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: "no network", at once
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    args = build(work, teacher_weights, trained_run)
    result = CliRunner().invoke(app, args)
    output = result.output
    assert result.exit_code == 2, (case, output)
    assert "Traceback" not in output, output
    assert result.exception is None or isinstance(result.exception, SystemExit), (case, result.exception)
    assert expected in output, (case, output)
    if not case.startswith("run-") or "spec.yaml" in expected:
        assert LOCATED.search(output), (case, output)  # file:line:col
    else:
        assert str(work / "runs" / "run") in output, (case, output)  # names the run's file
    assert "weights_only=False" not in output
    for line in output.strip().splitlines():
        assert len(line) < 600, line  # one line each, not a dump


@pytest.mark.parametrize("workers", [0])  # (a worker's log record goes to pytest's copied handler, not stderr)
def test_a_corrupt_or_huge_image_is_named(tmp_path, monkeypatch, capfd, caplog, teacher_weights, workers):
    # An unreadable image is skipped with a warning naming it (the convention of timm's own
    # training script, see tasgen.data.image_files); the run goes on, no traceback.
    monkeypatch.chdir(tmp_path)
    _image_folder(_images_with_a_corrupt_one)(tmp_path, teacher_weights, tmp_path)
    result = CliRunner().invoke(app, ["train", "spec.yaml", "--set", "data.batch_size=24", "--set", "data.val_fraction=0",
                                      "--set", f"data.num_workers={workers}", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    seen = result.output + caplog.text + capfd.readouterr().err  # a worker process writes to the real stderr
    warnings = [line for line in seen.splitlines() if "skipped the image" in line]
    assert any("a/5.png" in line for line in warnings), seen
    assert any("b/7.png" in line and "pixels" in line for line in warnings), seen
    assert "Traceback" not in seen

