"""Write an MNIST-format (IDX) dataset as an image-folder tree tasgen reads (`data.dataset: imagefolder`).

MNIST, Fashion-MNIST, KMNIST and EMNIST ship as IDX files: ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``,
gzipped or not, either directly in a folder or in torchvision's ``<Name>/raw/`` layout.
This tool writes the first ``--train-per-class`` images of each class of the training
files to ``OUT/train/<class>/`` and the first ``--test-per-class`` of the test files to
``OUT/val/<class>/`` as PNG, so a study can run on a subset of a fixed size, in file
order (no randomness: the same files give the same tree).

    python tools/idx_to_folder.py /usr/share/datasets/fashion-mnist runs/fashion5k \
        --train-per-class 500 --test-per-class 100

A spec then reads it with ``data: {dataset: imagefolder, root: runs/fashion5k}``; tasgen
carves its validation split out of ``train/`` and tests on ``val/``.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

# IDX element types (the third byte of the magic number).
_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class IdxError(ValueError):
    """A missing, truncated or malformed IDX file."""


def read_idx(path: Path) -> np.ndarray:
    """The array an IDX file holds (gzipped or not).

    Raises:
        IdxError: the magic number, the element type or the length is wrong.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise IdxError(f"{path}: not an IDX file (its first bytes are {raw[:4].hex() or 'missing'})")
    dims = raw[3]
    header = 4 + 4 * dims
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header ({len(raw)} bytes, {header} needed)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise IdxError(f"{path}: {len(raw)} bytes, but its header {shape} of {dtype} says {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_file(folder: Path, stem: str) -> Path:
    """``stem`` or ``stem.gz`` in ``folder`` or in a ``*/raw/`` folder below it (torchvision's layout)."""
    candidates = [folder / stem, folder / f"{stem}.gz"]
    for raw in sorted(folder.glob("*/raw")):
        candidates += [raw / stem, raw / f"{stem}.gz"]
    for path in candidates:
        if path.is_file():
            return path
    raise IdxError(f"{folder}: no {stem}[.gz] (looked in the folder and in */raw/)")


def write_split(images: np.ndarray, labels: np.ndarray, out: Path, per_class: int) -> dict[int, int]:
    """The first ``per_class`` images of each class as ``out/<class>/<index>.png``; the count per class."""
    from PIL import Image

    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise IdxError(f"images {images.shape} and labels {labels.shape} do not pair up: "
                       "expected (N, H, W) and (N,)")
    counts: dict[int, int] = {}
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        label = int(label)
        if counts.get(label, 0) >= per_class:
            continue
        folder = out / f"{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L").save(folder / f"{index:05d}.png")
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder holding the four IDX files")
    parser.add_argument("out", type=Path, help="where train/ and val/ are written (must not hold them yet)")
    parser.add_argument("--train-per-class", type=int, default=500, help="images per class from the training files")
    parser.add_argument("--test-per-class", type=int, default=100, help="images per class from the test files")
    args = parser.parse_args(argv)
    if min(args.train_per_class, args.test_per_class) < 1:
        print("error: --train-per-class and --test-per-class must be at least 1", file=sys.stderr)
        return 2
    taken = [p for p in (args.out / "train", args.out / "val") if p.exists()]
    if taken:
        print(f"error: {', '.join(map(str, taken))} exists already: choose another OUT, or remove it",
              file=sys.stderr)
        return 2
    try:
        for split, prefix, per_class in (("train", "train", args.train_per_class),
                                         ("val", "t10k", args.test_per_class)):
            images = read_idx(find_file(args.source, f"{prefix}-images-idx3-ubyte"))
            labels = read_idx(find_file(args.source, f"{prefix}-labels-idx1-ubyte"))
            counts = write_split(images, labels, args.out / split, per_class)
            short = {c: n for c, n in counts.items() if n < per_class}
            print(f"{split}: {sum(counts.values())} images, {len(counts)} classes"
                  + (f" (fewer than {per_class} in classes {short})" if short else ""))
    except IdxError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
