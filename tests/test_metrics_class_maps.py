"""Class-averaged mean and std maps (seed 001): numpy loop reference, label formats, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics import ClassMaps, class_mean_maps


def reference(maps: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class at a time: np.mean and np.std (ddof=0) over the positive images' maps."""
    k = labels.shape[1]
    shared = maps.shape[1] == 1
    means, stds = [], []
    for c in range(k):
        chosen = maps[labels[:, c] == 1, 0 if shared else c]
        means.append(chosen.mean(0) if len(chosen) else np.full(maps.shape[2:], np.nan))
        stds.append(chosen.std(0) if len(chosen) else np.full(maps.shape[2:], np.nan))
    return np.stack(means), np.stack(stds), labels.sum(0)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 4]), st.floats(0, 1000))
def test_multi_hot_labels_equal_the_numpy_loop(seed, channels, offset):
    rng = np.random.default_rng(seed)
    maps = rng.random((25, channels, 6, 5)) + offset  # a large offset must not cost precision
    labels = (rng.random((25, 4)) < 0.4).astype(int)
    labels[:, 3] = 0  # a class without positives
    got = class_mean_maps(torch.tensor(maps), torch.tensor(labels))
    mean, std, count = reference(maps, labels)
    assert isinstance(got, ClassMaps) and got.mean.dtype == torch.float64 and got.mean.shape == (4, 6, 5)
    np.testing.assert_allclose(got.mean.numpy(), mean, atol=1e-9, rtol=0)
    np.testing.assert_allclose(got.std.numpy(), std, atol=1e-7, rtol=0)
    assert got.count.tolist() == count.tolist()
    assert torch.isnan(got.mean[3]).all() and torch.isnan(got.std[3]).all()


def test_integer_labels_and_edge_cases():
    maps = torch.arange(4 * 9, dtype=torch.float32).view(4, 1, 3, 3)
    got = class_mean_maps(maps, torch.tensor([0, 2, 0, 2]), num_classes=4)
    assert got.count.tolist() == [2, 0, 2, 0]
    assert torch.equal(got.mean[0], ((maps[0, 0] + maps[2, 0]) / 2).double())
    assert torch.allclose(got.std[2], torch.full((3, 3), 9.0, dtype=torch.float64))  # |27 - 9| / 2
    assert torch.isnan(got.mean[1]).all()
    assert class_mean_maps(maps, torch.tensor([0, 1, 0, 1])).mean.shape == (2, 3, 3)
    one = class_mean_maps(maps[:1], torch.tensor([0]))
    assert torch.equal(one.std, torch.zeros(1, 3, 3, dtype=torch.float64))  # a single image: std 0
    assert set(got.to_dict()) == {"mean", "std", "count"}
    with pytest.raises(ValueError, match="1 or K"):
        class_mean_maps(torch.rand(4, 3, 3, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="integer"):
        class_mean_maps(maps, torch.rand(4))
