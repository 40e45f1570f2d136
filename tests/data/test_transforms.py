"""Normalize, RandomErasing, the RandAugment posterize guard, and mixup."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import Mixup

from tasgen.data import DataError, RandomErasing, TensorImageTransform, build_mixup
from tasgen.emit.system import Normalize
from tasgen.spec.schema import AugmentSpec, DataSpec


def test_normalize_hand_values() -> None:
    norm = Normalize(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    # 0.5 everywhere: (0.5 - 0.5) / 0.5 = 0, (0.5 - 0.25) / 0.25 = 1, (0.5 - 0) / 1 = 0.5.
    out = norm(torch.full((2, 3, 4, 4), 0.5))
    assert out.shape == (2, 3, 4, 4)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.5]))
    # uint8 255 is 1.0: (1 - 0.5) / 0.5 = 1, (1 - 0.25) / 0.25 = 3, 1 / 1 = 1.
    out = norm(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    torch.testing.assert_close(out[0, :, 1, 1], torch.tensor([1.0, 3.0, 1.0]))
    assert {name for name, _ in norm.named_buffers()} == {"mean", "std"}


def test_random_erasing() -> None:
    torch.manual_seed(0)
    img = torch.full((3, 16, 16), 0.5)
    assert torch.equal(RandomErasing(0.0)(img), img)
    erased = RandomErasing(1.0)(img)
    changed = (erased != img).any(0)
    assert 0 < changed.sum() < 16 * 16 and 0 <= erased.min() and erased.max() <= 1
    assert torch.equal(img, torch.full((3, 16, 16), 0.5))  # the input is not modified


def test_posterize_never_asks_pillow_for_zero_bits() -> None:
    transform = TensorImageTransform(
        AugmentSpec(randaugment="rand-m10-mstd0-inc1"), 8, training=True
    )
    op = next(op for op in transform.randaugment.ops if op.name == "PosterizeIncreasing")
    op.prob, op.magnitude = 1.0, 10  # timm maps this to 0 bits, which Pillow rejects
    img = Image.new("RGB", (8, 8), (200, 100, 30))
    pixels = np.asarray(op(img)).reshape(-1, 3)
    assert np.unique(pixels, axis=0).tolist() == [[128, 0, 0]]  # 1 bit kept per channel


def test_tensor_transform_with_all_augmentations_runs() -> None:
    aug = AugmentSpec(randaugment="rand-m9-mstd0.5-inc1", random_erasing=0.5, hflip=0.5)
    transform = TensorImageTransform(aug, 16, training=True)
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    for _ in range(50):
        out = transform(img)
        assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    plain = TensorImageTransform(aug, 16, training=False)
    torch.testing.assert_close(plain(img), img.float() / 255)


def test_build_mixup() -> None:
    assert build_mixup(DataSpec(), num_classes=10, label_smoothing=0.1) is None
    data = DataSpec(batch_size=4, augment={"mixup": 0.8, "cutmix": 1.0})
    mixup = build_mixup(data, num_classes=10, label_smoothing=0.1)
    assert isinstance(mixup, Mixup)
    images, soft = mixup(torch.rand(4, 3, 8, 8), torch.tensor([0, 1, 2, 3]))
    assert images.shape == (4, 3, 8, 8) and soft.shape == (4, 10)
    torch.testing.assert_close(soft.sum(1), torch.ones(4))
    with pytest.raises(DataError, match="even"):
        build_mixup(DataSpec(batch_size=5, augment={"cutmix": 1.0}), 10, 0.0)
