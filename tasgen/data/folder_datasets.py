"""Datasets read from disk through torchvision: CIFAR-10/100 and ImageFolder trees."""

from __future__ import annotations

from pathlib import Path

from torchvision.datasets import CIFAR10, CIFAR100, ImageFolder

from tasgen.spec.schema import DataSpec

from .errors import DataError
from .transforms import build_pil_transforms

__all__ = ["cifar_datasets", "image_folder_datasets"]

_CIFAR = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def cifar_datasets(data: DataSpec) -> tuple[CIFAR10, CIFAR10, CIFAR10]:
    """CIFAR-10 or CIFAR-100 from `data.root` (torchvision's python-pickle release).

    Args:
        data: The data section of a spec; `dataset` is 'cifar10' or 'cifar100'.

    Returns:
        `(train, train_eval, test)` torchvision datasets yielding (float CHW in [0, 1], label):
        the training files with training transforms, the same files with eval
        transforms (the validation split is carved from them), and the test files.

    Raises:
        DataError: The files are missing (and download is off), corrupt, or the download failed.
    """
    cls = _CIFAR[data.dataset]
    assert data.root is not None  # the schema requires a root for cifar
    root = Path(data.root).expanduser()
    folder = root / cls.base_folder
    files = [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    missing = [name for name in files if not (folder / name).is_file()]
    if missing and not data.download:
        raise DataError(
            f"{data.dataset} not found: {folder} lacks {', '.join(missing)}. Set `data.download: true` "
            f"to download it into {root}, or extract {cls.filename} there so that "
            f"{root}/{cls.base_folder}/ exists."
        )
    # The images are the whole object; timm's default 0.875 centre crop would cut it.
    train_tf, eval_tf = build_pil_transforms(data, crop_pct=1.0)
    try:
        train = cls(str(root), train=True, transform=train_tf, download=data.download)
        train_eval = cls(str(root), train=True, transform=eval_tf, download=False)
        evaluate = cls(str(root), train=False, transform=eval_tf, download=False)
    except RuntimeError as err:  # torchvision's md5 check failed
        raise DataError(
            f"{data.dataset} under {folder} is corrupt ({err}). Delete {folder} and set "
            f"`data.download: true`, or extract a fresh {cls.filename} into {root}."
        ) from err
    except OSError as err:  # URLError and friends: no network, no permission
        raise DataError(
            f"could not download {data.dataset} into {root}: {err}. Download {cls.url} "
            f"elsewhere and extract it into {root}."
        ) from err
    return train, train_eval, evaluate


def image_folder_datasets(data: DataSpec) -> tuple[ImageFolder, ImageFolder, ImageFolder]:
    """An ImageFolder tree: `root/train/<class>/*.jpg` and `root/val/<class>/*` (or `root/eval`).

    Args:
        data: The data section of a spec; `dataset` is 'imagefolder'.

    Returns:
        `(train, train_eval, test)` torchvision ImageFolders yielding (float CHW in [0, 1],
        label): train/ with training transforms, train/ with eval transforms (the
        validation split is carved from it), and val/ (or eval/), the test split.

    Raises:
        DataError: A split is missing or empty, or the two splits have different classes.
    """
    assert data.root is not None  # the schema requires a root for imagefolder
    root = Path(data.root).expanduser()
    layout = "expected root/train/<class>/<image> and root/val/<class>/<image> (or root/eval/...)"
    train_dir = root / "train"
    eval_dir = next((root / name for name in ("val", "eval") if (root / name).is_dir()), None)
    if not train_dir.is_dir() or eval_dir is None:
        lacking = "train/" if not train_dir.is_dir() else "val/ (or eval/)"
        raise DataError(f"imagefolder {root} has no {lacking}: {layout}")

    train_tf, eval_tf = build_pil_transforms(data)
    splits = []
    for directory, transform in ((train_dir, train_tf), (train_dir, eval_tf), (eval_dir, eval_tf)):
        try:
            splits.append(ImageFolder(str(directory), transform=transform))
        except FileNotFoundError as err:  # no class folder, or one without images
            raise DataError(f"imagefolder {directory} lacks images ({err}); {layout}") from err
    train, train_eval, evaluate = splits
    if train.classes != evaluate.classes:
        only_train = sorted(set(train.classes) - set(evaluate.classes))
        only_eval = sorted(set(evaluate.classes) - set(train.classes))
        raise DataError(
            f"imagefolder {root}: train/ and {eval_dir.name}/ must hold the same class folders "
            f"(only in train: {only_train}; only in {eval_dir.name}: {only_eval})"
        )
    return train, train_eval, evaluate
