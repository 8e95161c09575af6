"""Sparseness (Gini) and complexity (entropy): hand-computed values, edge cases and properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics.complexity import complexity, sparseness
from harness.metrics.registry import get_metric

FAST = settings(max_examples=50, deadline=None)


def gini_loop(values: np.ndarray) -> float:
    """Gini index as the mean absolute difference over all pairs / (2 * mean): an independent formula."""
    v = np.abs(values.ravel()).astype(np.float64)
    return float(np.abs(v[:, None] - v[None, :]).sum() / (2 * v.size**2 * v.mean()))


def test_hand_computed_values():
    n = 16
    one_hot = torch.zeros(1, 1, 4, 4)
    one_hot[0, 0, 1, 2] = -3.0  # sign is irrelevant
    uniform = torch.full((1, 1, 4, 4), 0.5)
    maps = torch.cat([one_hot, uniform])
    assert sparseness(maps).tolist() == pytest.approx([1 - 1 / n, 0.0], abs=1e-12)
    assert complexity(maps).tolist() == pytest.approx([0.0, math.log(n)], abs=1e-12)
    half = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    assert complexity(half).item() == pytest.approx(math.log(2))
    assert sparseness(half).item() == pytest.approx(0.5)  # (2*3-5)+(2*4-5) = 4 over 4*2


def test_edge_cases_all_zero_and_nan_give_nan():
    maps = torch.tensor([[0.0, 0.0, 0.0], [1.0, float("nan"), 2.0], [1.0, 2.0, 3.0]])
    for fn in (sparseness, complexity):
        value = fn(maps)
        assert value[:2].isnan().all() and not value[2].isnan(), fn.__name__
    with pytest.raises(ValueError):
        sparseness(torch.zeros(3))


def test_sparseness_equals_pairwise_gini():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(6, 1, 7, 7)) * rng.random((6, 1, 1, 1)) ** 3
    maps[0] = np.round(maps[0])  # ties
    expected = [gini_loop(m) for m in maps]
    np.testing.assert_allclose(sparseness(torch.from_numpy(maps)).numpy(), expected, atol=1e-12)


def test_registered():
    assert get_metric("sparseness").category == "complexity" and get_metric("sparseness").higher_is_better
    assert get_metric("complexity").category == "complexity" and get_metric("complexity").higher_is_better is False


@st.composite
def nonzero_maps(draw):
    b, n = draw(st.integers(1, 4)), draw(st.integers(1, 40))
    seed = draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn((b, n), generator=g, dtype=torch.float64) * torch.rand((b, n), generator=g) ** 4
    maps[:, 0] += 1.0  # never all zero
    return maps


@FAST
@given(nonzero_maps(), st.floats(1e-3, 1e3))
def test_range_and_invariance_to_positive_scaling_and_sign(maps, scale):
    n = maps.shape[1]
    s, h = sparseness(maps), complexity(maps)
    assert ((s >= -1e-12) & (s <= 1 - 1 / n + 1e-12)).all()
    assert ((h >= -1e-12) & (h <= math.log(n) + 1e-12)).all()
    assert torch.allclose(sparseness(scale * maps), s, atol=1e-10)
    assert torch.allclose(complexity(scale * maps), h, atol=1e-10)
    assert torch.allclose(sparseness(-maps), s) and torch.allclose(complexity(-maps), h)
