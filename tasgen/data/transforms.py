"""Image transforms that stop short of normalisation.

Loaders yield float images in [0, 1]; each model normalises on the device with its
own mean and std (`tasgen.emit.system.Normalize`), because teacher and student may expect different ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from timm.data import auto_augment, create_transform
from torchvision import transforms as T

from tasgen.spec.schema import AugmentSpec, DataSpec

__all__ = ["RandomErasing", "TensorImageTransform", "ToFloat", "build_pil_transforms"]

Transform = Callable[..., torch.Tensor]


class RandomErasing:
    """Erase one random rectangle with uniform noise, on a float CHW image in [0, 1].

    timm's RandomErasing runs after normalisation (its fill is N(0, 1) or 0 = the mean);
    in [0, 1] space uniform noise plays the role of its per-pixel mode.

    Args:
        p: Probability of erasing an image.
        scale: Range of the erased area as a share of the image.
        log_ratio: Range of log(aspect ratio) of the rectangle.
    """

    def __init__(
        self,
        p: float,
        scale: tuple[float, float] = (0.02, 1 / 3),
        log_ratio: tuple[float, float] = (math.log(0.3), math.log(1 / 0.3)),
    ) -> None:
        self.p = p
        self.scale = scale
        self.log_ratio = log_ratio

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if torch.rand(()).item() >= self.p:
            return img
        _, height, width = img.shape
        for _ in range(10):
            area = height * width * float(torch.empty(()).uniform_(*self.scale))
            ratio = math.exp(float(torch.empty(()).uniform_(*self.log_ratio)))
            h, w = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < h < height and 0 < w < width:
                top = int(torch.randint(0, height - h + 1, ()))
                left = int(torch.randint(0, width - w + 1, ()))
                img = img.clone()
                img[:, top : top + h, left : left + w] = torch.rand(img.shape[0], h, w)
                return img
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


def _posterize_at_least_one_bit(
    img: Image.Image, bits_to_keep: int, **kwargs: object
) -> Image.Image:
    return auto_augment.posterize(img, max(int(bits_to_keep), 1), **kwargs)


def _keep_posterize_legal(transform: object) -> None:
    """Make timm's posterize ops keep at least 1 bit, in place.

    timm maps the top magnitudes of 'inc1' policies (e.g. rand-m9-mstd0.5-inc1) to
    0 bits, which recent Pillow (13.0 here) rejects with a ValueError mid-epoch;
    1 bit is the nearest legal image. Only this transform's op objects change.
    """
    for step in getattr(transform, "transforms", []):
        _keep_posterize_legal(step)
    ops = list(getattr(transform, "ops", []))
    for sub_policy in getattr(transform, "policy", []):
        ops.extend(sub_policy)
    for op in ops:
        if getattr(op, "aug_fn", None) is auto_augment.posterize:
            op.aug_fn = _posterize_at_least_one_bit


class ToFloat:
    """uint8 CHW in 0..255 -> float32 in [0, 1]; float input passes through."""

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return img.float().div_(255.0) if img.dtype == torch.uint8 else img

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def build_pil_transforms(
    data: DataSpec, crop_pct: float | None = None
) -> tuple[Transform, Transform]:
    """timm's train and eval transforms for PIL images, ending in float tensors in [0, 1].

    Args:
        data: The data section of a spec (image_size and augment are read).
        crop_pct: Eval centre-crop share (None: timm's 0.875; 1.0 keeps the whole image).

    Returns:
        `(train_transform, eval_transform)`, each PIL image -> float CHW tensor.
    """
    aug = data.augment
    # normalize=False makes timm stop at a uint8 tensor, and drop its random erasing,
    # which assumes normalised input; ours runs in [0, 1] instead.
    train = create_transform(
        data.image_size,
        is_training=True,
        hflip=aug.hflip,
        auto_augment=aug.randaugment,
        re_prob=0.0,
        normalize=False,
    )
    _keep_posterize_legal(train)
    evaluate = create_transform(
        data.image_size, is_training=False, crop_pct=crop_pct, normalize=False
    )
    train_steps: list[Transform] = [train, ToFloat()]
    if aug.random_erasing > 0:
        train_steps.append(RandomErasing(aug.random_erasing))
    return T.Compose(train_steps), T.Compose([evaluate, ToFloat()])


class TensorImageTransform:
    """Augmentation of uint8 CHW tensors (digits, synthetic): RandAugment, flip, erasing.

    The images are already at their final size, so there is no crop or resize.

    Args:
        augment: The augment section of a spec; mixup/cutmix are batch-level and not read here.
        image_size: Side of the images (scales RandAugment's translations).
        training: False gives the plain uint8 -> [0, 1] conversion.
    """

    def __init__(self, augment: AugmentSpec, image_size: int, training: bool) -> None:
        self.training = training
        self.to_float = ToFloat()
        self.hflip = augment.hflip if training else 0.0
        self.randaugment = None
        if training and augment.randaugment:
            hparams = {"translate_const": int(image_size * 0.45), "img_mean": (128, 128, 128)}
            self.randaugment = auto_augment.rand_augment_transform(augment.randaugment, hparams)
            _keep_posterize_legal(self.randaugment)
        self.erasing = (
            RandomErasing(augment.random_erasing)
            if training and augment.random_erasing > 0
            else None
        )

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if self.randaugment is not None:
            pil = Image.fromarray(img.permute(1, 2, 0).numpy())
            img = torch.from_numpy(np.asarray(self.randaugment(pil)).copy()).permute(2, 0, 1)
        if self.hflip > 0 and torch.rand(()).item() < self.hflip:
            img = img.flip(-1)
        img = self.to_float(img)
        if self.erasing is not None:
            img = self.erasing(img)
        return img

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(training={self.training}, hflip={self.hflip}, "
            f"randaugment={self.randaugment is not None}, erasing={self.erasing})"
        )
