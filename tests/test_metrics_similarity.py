"""Spearman (signed and absolute) and Pearson per image against scipy, with ties, constant rows and NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from harness.metrics import average_ranks, pearson, spearman
from harness.metrics.registry import get_metric
from harness.metrics.similarity import spearman_abs

FAST = settings(max_examples=50, deadline=None)


@st.composite
def paired_maps(draw):
    b, n = draw(st.integers(1, 4)), draw(st.integers(2, 30))
    levels = draw(st.sampled_from([2, 5, 1000]))  # few levels -> many ties
    seed = draw(st.integers(0, 10_000))
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(-levels, levels + 1, (b, 1, n), generator=g).double()
    c = torch.randint(-levels, levels + 1, (b, 1, n), generator=g).double()
    return a, c


@FAST
@given(paired_maps())
def test_spearman_and_pearson_equal_scipy(data):
    a, b = data
    rho, r = spearman(a, b), pearson(a, b)
    for i in range(a.shape[0]):
        x, y = a[i].flatten().numpy(), b[i].flatten().numpy()
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            assert math.isnan(rho[i].item()) and math.isnan(r[i].item())
            continue
        assert rho[i].item() == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert r[i].item() == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)


@FAST
@given(paired_maps())
def test_average_ranks_equal_scipy_rankdata(data):
    a, _ = data
    flat = a.flatten(1)
    np.testing.assert_array_equal(average_ranks(flat).numpy(), stats.rankdata(flat.numpy(), axis=1))


@FAST
@given(paired_maps())
def test_spearman_invariant_to_increasing_rescaling(data):
    a, b = data  # integer-valued: the rescalings below are exact, ties are kept
    expected = spearman(a, b)
    for fa, fb in ((3 * a + 2, b), (a.pow(3), b.pow(5) + b), (a, 0.5 * b - 7)):
        assert torch.allclose(spearman(fa, fb), expected, atol=1e-12, equal_nan=True)
    self_similarity = spearman(a, a)
    constant = a.flatten(1).amax(1) == a.flatten(1).amin(1)
    assert torch.allclose(self_similarity[~constant], torch.ones(int((~constant).sum()), dtype=torch.float64))


def test_edge_cases():
    a = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0], [1.0, float("nan"), 3.0]])
    b = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    rho = spearman(a, b)
    assert rho[0].item() == pytest.approx(-1.0) and math.isnan(rho[1].item()) and math.isnan(rho[2].item())
    assert spearman(a[:1], a[:1]).item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        spearman(a, b[:, :2])


@FAST
@given(paired_maps())
def test_spearman_abs_equals_scipy_on_magnitudes_and_ignores_signs(data):
    a, b = data
    rho = spearman_abs(a, b)
    for i in range(a.shape[0]):
        x, y = a[i].flatten().abs().numpy(), b[i].flatten().abs().numpy()
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            assert math.isnan(rho[i].item())
            continue
        assert rho[i].item() == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert torch.allclose(spearman_abs(-a, b), rho, equal_nan=True)


def test_registered_without_direction():
    for name in ("spearman", "spearman_abs", "pearson"):
        spec = get_metric(name)
        assert spec.category == "similarity" and spec.higher_is_better is None and not spec.needs_mask
