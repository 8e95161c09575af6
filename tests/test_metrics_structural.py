"""SSIM and HOG similarity against scikit-image, image by image; their edge cases and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.feature import hog
from skimage.metrics import structural_similarity

from harness.metrics.registry import get_metric
from harness.metrics.structural import hog_features, hog_similarity, separable_filter, ssim, symmetric_pad

FAST = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(4, 1, 28, 28))
    b = a + rng.normal(scale=0.8, size=a.shape)  # related, not identical
    return a, b


def joint_range(x: np.ndarray, y: np.ndarray) -> float:
    return float(max(x.max(), y.max()) - min(x.min(), y.min()))


@pytest.mark.parametrize("options", [
    {},
    {"gaussian_weights": True},
    {"gaussian_weights": True, "win_size": 7},  # Gaussian wider than the crop: borders matter
    {"win_size": 3, "use_sample_covariance": False},
    {"gaussian_weights": True, "sigma": 0.8, "K1": 0.05, "K2": 0.1},
])
def test_ssim_equals_skimage(pairs, options):
    a, b = pairs
    ours_options = {k.lower(): v for k, v in options.items()}
    ours = ssim(torch.from_numpy(a), torch.from_numpy(b), **ours_options).numpy()
    theirs = [structural_similarity(x[0], y[0], data_range=joint_range(x, y), **options) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, theirs, atol=1e-7)
    fixed = ssim(torch.from_numpy(a), torch.from_numpy(b), data_range=5.0, **ours_options).numpy()
    theirs = [structural_similarity(x[0], y[0], data_range=5.0, **options) for x, y in zip(a, b)]
    np.testing.assert_allclose(fixed, theirs, atol=1e-7)


def test_ssim_multichannel_is_the_channel_mean(pairs):
    a, b = (np.concatenate([m, m[:, :, ::-1]], axis=1) for m in pairs)  # 2 channels
    ours = ssim(torch.from_numpy(a), torch.from_numpy(b), data_range=4.0).numpy()
    theirs = [structural_similarity(x, y, data_range=4.0, channel_axis=0) for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, theirs, atol=1e-7)


def test_ssim_edge_cases():
    zeros = torch.zeros(2, 1, 9, 9)
    ones = torch.ones(2, 1, 9, 9)
    assert ssim(zeros, zeros).isnan().all()  # equal constant maps: zero joint range -> NaN
    assert torch.allclose(ssim(zeros, zeros, data_range=1.0), torch.ones(2, dtype=torch.float64))
    assert ssim(zeros, ones).lt(1e-3).all()  # different constants: luminance term ~ 0
    noisy = torch.rand(2, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    noisy[1, 0, 4, 4] = float("nan")
    value = ssim(noisy, noisy)
    assert value[0].item() == pytest.approx(1.0) and math.isnan(value[1].item())
    with pytest.raises(ValueError, match="win_size"):
        ssim(zeros, zeros, win_size=11)
    with pytest.raises(ValueError, match="win_size"):
        ssim(zeros, zeros, win_size=4)
    with pytest.raises(ValueError, match="data_range"):
        ssim(zeros, zeros, data_range=0.0)
    with pytest.raises(ValueError, match="shape"):
        ssim(zeros, zeros[:, :, :8])


def test_symmetric_padding_and_filter_match_scipy():
    from scipy import ndimage

    x = torch.arange(12.0, dtype=torch.float64).view(1, 3, 4)
    np.testing.assert_array_equal(symmetric_pad(x, 5).numpy()[0], np.pad(x.numpy()[0], 5, mode="symmetric"))
    image = torch.rand(2, 1, 10, 13, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kernel = torch.tensor([0.1, 0.2, 0.4, 0.2, 0.1], dtype=torch.float64)
    expected = ndimage.correlate1d(ndimage.correlate1d(image.numpy(), kernel.numpy(), axis=-2), kernel.numpy(), axis=-1)
    np.testing.assert_allclose(separable_filter(image, kernel).numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("options", [
    {},  # 9 orientations, 8x8 cells, 3x3 blocks, L2-Hys
    {"orientations": 8, "pixels_per_cell": (4, 6), "cells_per_block": (2, 3), "block_norm": "L2"},
    {"orientations": 7, "pixels_per_cell": (7, 7), "cells_per_block": (2, 2), "block_norm": "L1"},
    {"pixels_per_cell": (5, 5), "cells_per_block": (1, 1), "block_norm": "L1-sqrt"},
])
def test_hog_features_equal_skimage(pairs, options):
    a, _ = pairs
    ours = hog_features(torch.from_numpy(a), **options).numpy()
    theirs = np.stack([hog(x[0], **options) for x in a])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)  # skimage sums cells in float32


def test_hog_features_on_integer_images_hit_bin_edges_as_skimage():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 3, size=(3, 24, 24)).astype(np.float64)  # gradients at 0/45/90/135 degrees
    np.testing.assert_allclose(hog_features(torch.from_numpy(a)).numpy(), np.stack([hog(x) for x in a]), atol=1e-6)


def test_hog_similarity_equals_pearson_of_skimage_features(pairs):
    a, b = pairs
    ours = hog_similarity(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    theirs = [np.corrcoef(hog(x[0]), hog(y[0]))[0, 1] for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert 0 < ours.min() and ours.max() < 1


def test_hog_edge_cases():
    constant = torch.ones(2, 1, 24, 24)
    assert hog_similarity(constant, torch.rand(2, 1, 24, 24)).isnan().all()
    with pytest.raises(ValueError, match="too small"):
        hog_features(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="block_norm"):
        hog_features(torch.zeros(1, 1, 24, 24), block_norm="L3")


def test_registered():
    for name in ("ssim", "hog_similarity"):
        spec = get_metric(name)
        assert spec.category == "similarity" and spec.higher_is_better is None and not spec.needs_mask


@st.composite
def map_pairs(draw):
    seed = draw(st.integers(0, 10_000))
    size = draw(st.integers(7, 12))
    levels = draw(st.sampled_from([3, 1000]))
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, levels, (2, 1, size, size), generator=g).double()
    b = torch.randint(0, levels, (2, 1, size, size), generator=g).double()
    return a, b


@FAST
@given(map_pairs(), st.booleans())
def test_ssim_symmetric_bounded_and_one_on_identical_maps(data, gaussian):
    a, b = data
    options = {"gaussian_weights": gaussian, "win_size": 7}
    forward, backward = ssim(a, b, **options), ssim(b, a, **options)
    assert torch.allclose(forward, backward, atol=1e-12)
    assert ((forward >= -1 - 1e-12) & (forward <= 1 + 1e-12)).all()
    assert torch.allclose(ssim(a, a, **options), torch.ones(2, dtype=torch.float64), atol=1e-12)
