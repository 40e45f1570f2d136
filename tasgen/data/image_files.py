"""Image files read by timm's `ImageDataset`, with tasgen's folder scan and one policy for bad images.

The folder scan (`tasgen.spec.image_folder.scan_class_folders`) is timm's walk that
refuses symlink cycles. The policy: an image that cannot be decoded (corrupt,
truncated, or larger than PIL's decompression-bomb limit, ``PIL.Image.MAX_IMAGE_PIXELS``
pixels) is skipped, with one warning per file naming it and the reason, and the next
image takes its place (timm's convention, so an epoch keeps its length). Ten
unreadable images in a row stop the run with a `DataError`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import IO, Any

from PIL import Image
from timm.data import ImageDataset
from timm.data.readers.reader import Reader

from tasgen.spec.image_folder import ClassFolders

from .errors import DataError

__all__ = ["ClassFolderReader", "ImageFiles", "MAX_SKIPPED_IN_A_ROW"]

_logger = logging.getLogger(__name__)

MAX_SKIPPED_IN_A_ROW = 10  # timm's TIMM_DATASET_MAX_RETRIES default
# What PIL raises for a file it cannot decode: OSError (UnidentifiedImageError, "image file is
# truncated"), SyntaxError and ValueError (broken PNG chunks), and the bomb check's error and warning.
_UNREADABLE = (OSError, SyntaxError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning)
_warned: set[str] = set()  # per process: one warning per file, not one per epoch


class ClassFolderReader(Reader):
    """timm's folder reader (``ReaderImageFolder``) over a `ClassFolders` scan.

    Args:
        root: The split folder.
        folders: Its scan (images, classes).
    """

    def __init__(self, root: str, folders: ClassFolders) -> None:
        super().__init__()
        self.root = root
        self.samples = folders.samples
        self.class_to_idx = folders.class_to_idx

    def __getitem__(self, index: int) -> tuple[IO[bytes], int]:
        path, target = self.samples[index]
        return open(path, "rb"), target  # noqa: SIM115 - the dataset closes it after decoding

    def __len__(self) -> int:
        return len(self.samples)

    def _filename(self, index: int, basename: bool = False, absolute: bool = False) -> str:
        filename = self.samples[index][0]
        if basename:
            return os.path.basename(filename)
        return filename if absolute else os.path.relpath(filename, self.root)


class ImageFiles(ImageDataset):
    """timm's `ImageDataset` that names an unreadable image and skips it (see the module's policy)."""

    def __getitem__(self, index: int) -> tuple[Any, int]:
        first = index
        for _ in range(MAX_SKIPPED_IN_A_ROW):
            try:
                img, target = self._decode(index)
                break
            except _UNREADABLE as err:
                _skip(self.source(index), err)
                index = (index + 1) % len(self.reader)
        else:
            raise DataError(
                f"{MAX_SKIPPED_IN_A_ROW} images in a row cannot be read, from {self.source(first)} on "
                "(see the warnings above). Replace or remove them."
            )
        if self.transform is not None:
            img = self.transform(img)
        if target is None:
            target = -1
        elif self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    def _decode(self, index: int) -> tuple[Image.Image, int | None]:
        fileobj, target, *_ = self.reader[index]
        with contextlib.closing(fileobj), warnings.catch_warnings():
            # Between 1x and 2x the limit PIL only warns (naming no file) and decodes anyway.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fileobj)
            img = img.convert(self.input_img_mode or "RGB")  # decodes the pixels: truncation shows here
        return img, target

    def source(self, index: int) -> str:
        """The image's file: its path, or ``archive.tar:member`` for a tar reader."""
        name = self.reader.filename(index, absolute=True)
        root = str(getattr(self.reader, "root", ""))
        return f"{root}:{name}" if root.endswith(".tar") else str(name)


def _skip(source: str, err: BaseException) -> None:
    if source in _warned:
        return
    _warned.add(source)
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if isinstance(err, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        reason += f" (PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); shrink it, or"
    else:
        reason += ";"
    _logger.warning(f"skipped the image {source}: {reason} replace or remove the file")
