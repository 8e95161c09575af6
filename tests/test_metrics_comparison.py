"""ANOVA with Tukey HSD and Spearman across architectures, against scipy and textbook values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from harness.metrics import AnovaResult, anova_tukey, spearman_correlation

# The three-group example of scipy.stats.tukey_hsd's documentation (hand-checked: SSB 66.772,
# SSW 56.128, F = (66.772 / 2) / (56.128 / 12) = 7.1378).
TEXTBOOK = {
    "g0": [24.5, 23.5, 26.4, 27.1, 29.9],
    "g1": [28.4, 34.2, 29.5, 32.2, 30.1],
    "g2": [26.1, 28.3, 24.3, 26.2, 27.8],
}


def test_anova_tukey_textbook_reference_values():
    result = anova_tukey(TEXTBOOK)
    assert isinstance(result, AnovaResult)
    assert result.f == pytest.approx(7.137827822120864, rel=1e-12)
    assert result.p == pytest.approx(0.009073317468563076, rel=1e-9)
    assert result.reject and result.means == pytest.approx((26.28, 30.88, 26.54))
    table = {(p.group_a, p.group_b): p for p in result.pairs}
    assert list(table) == [("g0", "g1"), ("g0", "g2"), ("g1", "g2")]
    # scipy's printed table: (0 - 1) -4.600 p 0.014 [-8.249, -0.951]; (0 - 2) -0.260 p 0.980; (1 - 2) 4.340 p 0.020
    for pair, (diff, p, low, high, reject) in {
        ("g0", "g1"): (-4.60, 0.014, -8.249, -0.951, True),
        ("g0", "g2"): (-0.26, 0.980, -3.909, 3.389, False),
        ("g1", "g2"): (4.34, 0.020, 0.691, 7.989, True),
    }.items():
        got = table[pair]
        assert (got.mean_difference, got.p, got.low, got.high) == pytest.approx((diff, p, low, high), abs=6e-4)
        assert got.reject is reject


def test_anova_tukey_equals_scipy_exactly():
    result = anova_tukey({k: torch.tensor(v, dtype=torch.float64) for k, v in TEXTBOOK.items()}, alpha=0.01)
    samples = list(TEXTBOOK.values())
    anova, tukey = stats.f_oneway(*samples), stats.tukey_hsd(*samples)
    ci = tukey.confidence_interval(confidence_level=0.99)
    assert (result.f, result.p) == pytest.approx((anova.statistic, anova.pvalue), rel=1e-12)
    for pair, (i, j) in zip(result.pairs, [(0, 1), (0, 2), (1, 2)]):
        assert (pair.mean_difference, pair.p, pair.low, pair.high) == pytest.approx(
            (tukey.statistic[i, j], tukey.pvalue[i, j], ci.low[i, j], ci.high[i, j]), rel=1e-12)
    # at alpha 0.01 the F test still rejects (p = 0.009) while no Tukey pair does (p = 0.014, 0.98, 0.020)
    assert result.reject and not any(pair.reject for pair in result.pairs)


def test_anova_does_not_reject_groups_from_one_distribution():
    # 12 DiffGradCAM-like values per model, all drawn from N(0.15, 0.05) (numpy seed 0, rounded)
    same = {
        "resnet18": [0.156, 0.143, 0.182, 0.155, 0.123, 0.168, 0.215, 0.197, 0.115, 0.087, 0.119, 0.152],
        "resnet50": [0.034, 0.139, 0.088, 0.113, 0.123, 0.134, 0.171, 0.202, 0.144, 0.218, 0.117, 0.168],
        "vit_small": [0.195, 0.155, 0.113, 0.104, 0.127, 0.161, 0.1, 0.14, 0.142, 0.177, 0.161, 0.168],
    }
    result = anova_tukey(same)
    assert result.f == pytest.approx(0.34728642908067936, rel=1e-9)
    assert result.p == pytest.approx(0.7091543094863434, rel=1e-9)
    assert not result.reject and not any(pair.reject for pair in result.pairs)
    assert all(pair.low < 0 < pair.high for pair in result.pairs)


def test_anova_nan_accounting_serialisation_and_errors():
    groups = {"a": [0.1, 0.2, float("nan"), 0.3], "b": np.array([0.5, 0.6, 0.7, float("nan")])}
    result = anova_tukey(groups)
    assert result.n == (3, 3) and result.n_excluded == 2
    d = result.to_dict()
    assert d["reject"] is True and d["pairs"][0]["group_a"] == "a" and set(d) >= {"f", "p", "groups", "means"}
    with pytest.raises(ValueError, match=">= 2 groups"):
        anova_tukey({"a": [1.0, 2.0]})
    with pytest.raises(ValueError, match=">= 2 finite"):
        anova_tukey({"a": [1.0, 2.0], "b": [3.0, float("nan")]})


def test_spearman_across_architectures_equals_scipy():
    accuracy = [0.81, 0.84, 0.86, 0.88, 0.90, 0.91]
    diffgradcam = torch.tensor([0.19, 0.17, 0.18, 0.08, 0.06, 0.05])  # more accurate, worse localisation
    result = spearman_correlation(accuracy, diffgradcam)
    assert result.rho == pytest.approx(-0.942857142857143, rel=1e-12)  # 1 - 6 * 68 / (6 * 35)
    assert result.p == pytest.approx(0.004804664723032055, rel=1e-9)
    assert (result.n, result.n_excluded) == (6, 0)
    ties = [1.0, 2.0, 2.0, 3.0, 5.0]
    expected = stats.spearmanr(ties, [2.0, 1.0, 4.0, 4.0, 3.0])
    got = spearman_correlation(ties, [2.0, 1.0, 4.0, 4.0, 3.0])
    assert (got.rho, got.p) == pytest.approx((expected.statistic, expected.pvalue), rel=1e-12)


def test_spearman_edge_cases():
    nan = float("nan")
    dropped = spearman_correlation([1, 2, nan, 4, 5], [1, 3, 2, nan, 4])
    assert (dropped.n, dropped.n_excluded) == (3, 2) and dropped.rho == pytest.approx(1.0)
    for x, y in ([1, 2], [3, 4]), ([1, 2, 3], [5, 5, 5]):
        result = spearman_correlation(x, y)
        assert math.isnan(result.rho) and math.isnan(result.p)
    assert set(spearman_correlation([1, 2, 3], [1, 2, 3]).to_dict()) == {"rho", "p", "n", "n_excluded"}
    with pytest.raises(ValueError, match="length"):
        spearman_correlation([1, 2, 3], [1, 2])
