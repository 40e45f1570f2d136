"""The layout of an ``imagefolder`` dataset, read without torch.

One reading of the files serves the spec checks (``tasgen train`` before planning,
the class count of ``tasgen plan``) and the data layer (timm's readers), so they
cannot disagree on what a split holds:

- a split is ``root/<split>/`` or ``root/<split>.tar``, under the split's name or one
  of timm's synonyms for it (``val``, ``validation``, ``eval``, ...);
- a split folder is walked as timm's folder reader walks it (recursively, following
  symlinks, an image's class is the name of its folder), except that a folder reached
  a second time (a symlink cycle, or two links to one folder) is refused: following
  it would count its images again and again;
- a class folder without images is refused, not counted as a class.
"""

from __future__ import annotations

import errno
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "EVAL_NAMES",
    "IMAGE_SUFFIXES",
    "TRAIN_NAMES",
    "ClassFolders",
    "ImageFolderError",
    "describe_split",
    "find_split",
    "natural_key",
    "scan_class_folders",
    "tar_classes",
]

# timm's split synonyms (timm.data.dataset_factory), in the order they are looked for.
EVAL_NAMES = ("validation", "val", "valid", "eval", "evaluation")
TRAIN_NAMES = ("train", "training")
# timm's image extensions (timm.data.readers.img_extensions): what its folder and tar readers read.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


class ImageFolderError(ValueError):
    """An image folder that cannot be read as a dataset; the message names the path and the fix."""


def natural_key(text: str) -> list[int | str]:
    """timm's sort key (``timm.utils.misc.natural_key``): ``img2`` before ``img10``; keeps timm's class indices."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]


def find_split(root: Path, split: str) -> Path | None:
    """``root/<split>`` as a folder or a ``.tar`` file, trying timm's synonyms of the split's name.

    Args:
        root: The dataset's ``data.root``.
        split: ``data.train_split`` or ``data.eval_split``.

    Returns:
        The folder or tar file, or None when there is neither.
    """
    names = [split]
    for synonyms in (TRAIN_NAMES, EVAL_NAMES):
        if split in synonyms:
            names += [s for s in synonyms if s != split]
    for name in names:
        for candidate in (root / name, root / f"{name}.tar"):
            if candidate.is_dir() or candidate.is_file():
                return candidate
    return None


def describe_split(split: str) -> str:
    """How a missing split is named to the user: its folder and the synonyms timm accepts."""
    for synonyms in (TRAIN_NAMES, EVAL_NAMES):
        if split in synonyms:
            ordered = sorted(synonyms, key=lambda s: (s != "val" and s != "train", s != split))
            return f"{ordered[0]}/ (or {', '.join(f'{s}/' for s in ordered[1:])} or a .tar of one)"
    return f"{split}/ (or {split}.tar)"


@dataclass(frozen=True)
class ClassFolders:
    """What one split folder holds, in timm's order.

    Attributes:
        samples: ``(image path, class index)`` per image, sorted by path (timm's natural order).
        class_to_idx: Class name (the image's folder name) to index, sorted by name.
        empty: Class folders (the split's sub-folders) that hold no image.
    """

    samples: list[tuple[str, int]]
    class_to_idx: dict[str, int]
    empty: tuple[Path, ...]


def scan_class_folders(folder: Path) -> ClassFolders:
    """Walk a split folder as timm's folder reader does, refusing a folder reached twice.

    Args:
        folder: ``root/train`` or another split folder.

    Returns:
        The split's `ClassFolders`.

    Raises:
        ImageFolderError: a symlink leads back to a folder already walked (a cycle, or
            a second link to one folder), or a folder cannot be listed.
    """
    # Folders are told apart by (device, inode): the same folder reached by another path is seen.
    seen: dict[tuple[int, int], Path] = {}
    files: list[tuple[str, str]] = []  # (path, class name)
    holds_images: set[Path] = set()  # the split's sub-folders with an image somewhere below
    stack = [(folder, None)]
    while stack:
        current, top = stack.pop()
        try:
            stat = current.stat()
        except OSError as err:
            raise ImageFolderError(f"cannot read the image folder {current}: {err.strerror or err}") from None
        key = (stat.st_dev, stat.st_ino)
        if key in seen:
            first = seen[key]
            how = ("leads back to the folder above it," if current.is_relative_to(first)  # a symlink cycle
                   else "is the same folder as")
            raise ImageFolderError(
                f"image folder {current} {how} {first}: following it would count the same images again. "
                "Remove the symlink (or replace it with a copy)."
            )
        seen[key] = current
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as err:
            raise ImageFolderError(f"cannot list the image folder {current}: {err.strerror or err}") from None
        label = current.name if current != folder else ""  # timm's leaf-folder class name
        for entry in entries:
            if _is_dir(entry):  # follows symlinks, as timm's os.walk(followlinks=True) does
                path = Path(entry.path)
                stack.append((path, top or path))
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:  # a dangling link too, as in timm
                files.append((entry.path, label))
                if top is not None:
                    holds_images.add(top)
    names = sorted({name for _, name in files}, key=natural_key)
    class_to_idx = {name: index for index, name in enumerate(names)}
    samples = sorted(((path, class_to_idx[name]) for path, name in files), key=lambda s: natural_key(s[0]))
    tops = sorted(p for p in folder.iterdir() if p.is_dir())
    empty = tuple(p for p in tops if p not in holds_images)
    return ClassFolders(samples, class_to_idx, empty)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """A folder, or a link to one; a link that never resolves (``a -> b -> a``) is refused."""
    try:
        return entry.is_dir()
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ImageFolderError(
                f"image folder entry {entry.path} is a symlink loop ({err.strerror}); remove the symlink."
            ) from None
        return False  # os.walk's choice: an entry it cannot stat is not a folder


def tar_classes(tar: Path) -> set[str]:
    """The class names of a split's tar file (folders of the members that are images), as timm's tar reader reads them.

    Raises:
        ImageFolderError: the file is not a readable tar archive.
    """
    try:
        with tarfile.open(tar) as archive:
            return {os.path.basename(os.path.dirname(m.name)) for m in archive.getmembers()
                    if m.isfile() and os.path.splitext(m.name)[1].lower() in IMAGE_SUFFIXES}
    except (OSError, tarfile.TarError) as err:
        raise ImageFolderError(f"cannot read {tar} as a tar archive ({err}); re-create it with `tar cf`.") from None
