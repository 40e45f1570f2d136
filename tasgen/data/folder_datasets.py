"""CIFAR-10/100 read from disk through torchvision (image folders: see timm_datasets)."""

from __future__ import annotations

from torchvision.datasets import CIFAR10, CIFAR100

from tasgen.spec.home import expand_user
from tasgen.spec.schema import DataSpec

from .errors import DataError
from .transforms import build_pil_transforms

__all__ = ["cifar_datasets"]

_CIFAR = {"cifar10": CIFAR10, "cifar100": CIFAR100}


def cifar_datasets(data: DataSpec) -> tuple[CIFAR10, CIFAR10]:
    """CIFAR-10 or CIFAR-100 from `data.root` (torchvision's python-pickle release).

    Args:
        data: The data section of a spec; `dataset` is 'cifar10' or 'cifar100'.

    Returns:
        `(train, eval)` torchvision datasets yielding (float CHW in [0, 1], label).

    Raises:
        DataError: The files are missing (and download is off), corrupt, or the download failed.
    """
    cls = _CIFAR[data.dataset]
    assert data.root is not None  # the schema requires a root for cifar
    root = expand_user(data.root)
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
    return train, evaluate
