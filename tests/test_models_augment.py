"""Batched augmentation: seeded, shape- and range-preserving, each transform doing what it says."""

from __future__ import annotations

import pytest
import torch

from harness.models.augment import augment_batch, random_affine, random_brightness_contrast, random_hflip
from harness.models.recipes import Augmentation

FULL = Augmentation(hflip=True, rotation_deg=10, shift=0.05, brightness=0.1, contrast=0.1, noise_std=0.02)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 8, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=gen(123))


def test_full_augmentation_is_seeded_and_in_range():
    x = images()
    a, b = augment_batch(x, FULL, gen(1)), augment_batch(x, FULL, gen(1))
    c = augment_batch(x, FULL, gen(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(x, images())  # input untouched


def test_disabled_augmentation_is_identity_copy():
    x = images()
    out = augment_batch(x, Augmentation(), gen())
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    assert not Augmentation().enabled and FULL.enabled


def test_hflip_flips_about_half():
    x = images(n=200, size=8)
    out = random_hflip(x, gen())
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert ((out == x).flatten(1).all(1) | flipped).all()
    assert 60 < int(flipped.sum()) < 140


def test_affine_without_rotation_or_shift_is_exact_identity():
    x = images()
    assert torch.allclose(random_affine(x, gen(), degrees=0, shift=0), x, atol=1e-6)


def test_rotation_is_bounded_by_degrees():
    # a centred horizontal bar rotated by <= 10 deg stays within tan(10 deg) * half-length of the row
    x = torch.zeros(16, 1, 65, 65)
    x[:, :, 32, 8:57] = 1
    out = random_affine(x, gen(), degrees=10, shift=0)
    rows = torch.nonzero(out[:, 0] > 0.5)[:, 1]
    assert (rows - 32).abs().max() <= 5  # tan(10 deg) * 24 = 4.2
    assert not torch.equal(out, x)


def test_brightness_contrast_bounds():
    x = torch.full((64, 1, 4, 4), 0.5)
    x[:, :, 0, 0] = 0.7
    out = random_brightness_contrast(x, gen(), brightness=0.1, contrast=0.2)
    mean_shift = out.mean((1, 2, 3)) - x.mean((1, 2, 3))
    assert mean_shift.abs().max() <= 0.1 + 1e-6
    spread = (out[:, 0, 0, 0] - out[:, 0, 1, 1]) / 0.2
    assert ((spread >= 0.8 - 1e-5) & (spread <= 1.2 + 1e-5)).all()


def test_noise_strength():
    x = torch.full((4, 1, 64, 64), 0.5)
    out = augment_batch(x, Augmentation(noise_std=0.02), gen())
    assert abs(float((out - x).std()) - 0.02) < 0.002


def test_generator_must_live_on_the_images_device():
    with pytest.raises(ValueError, match="generator"):
        augment_batch(images().to("meta"), FULL, gen())


def test_rejects_non_batched_input():
    with pytest.raises(ValueError, match=r"\[B,C,H,W\]"):
        augment_batch(torch.rand(1, 8, 8), FULL, gen())
