"""Performance metrics against scikit-learn (ties included) and a loop reference for ECE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from harness.metrics import (
    accuracy,
    auprc,
    auroc,
    expected_calibration_error,
    f1,
    precision,
    sensitivity,
    specificity,
)

FAST = settings(max_examples=60, deadline=None)


@st.composite
def scored_labels(draw, min_size: int = 2, max_size: int = 40):
    """Scores with many ties (a few distinct levels) and binary labels."""
    n = draw(st.integers(min_size, max_size))
    levels = draw(st.integers(1, 6))
    scores = draw(st.lists(st.integers(0, levels).map(lambda k: k / 6), min_size=n, max_size=n))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    return np.array(scores), np.array(labels)


def same(a: float, b: float, tol: float = 1e-12) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


@FAST
@given(scored_labels())
def test_auroc_and_auprc_equal_sklearn(data):
    scores, labels = data
    ours = float(auroc(torch.tensor(scores), torch.tensor(labels)))
    if labels.min() == labels.max():
        assert math.isnan(ours)
    else:
        assert same(ours, skm.roc_auc_score(labels, scores))
    ap = float(auprc(torch.tensor(scores), torch.tensor(labels)))
    if labels.sum() == 0:
        assert math.isnan(ap)
    else:
        assert same(ap, skm.average_precision_score(labels, scores))


@FAST
@given(scored_labels(), st.sampled_from([0.0, 0.5, 1 / 3, 1.0]))
def test_threshold_metrics_equal_sklearn(data, threshold):
    scores, labels = data
    pred = (scores >= threshold).astype(int)
    s, y = torch.tensor(scores), torch.tensor(labels)
    nan = np.nan
    assert same(float(accuracy(s, y, threshold)), skm.accuracy_score(labels, pred))
    assert same(float(sensitivity(s, y, threshold=threshold)),
                skm.recall_score(labels, pred, zero_division=nan))
    assert same(float(specificity(s, y, threshold=threshold)),
                skm.recall_score(labels, pred, pos_label=0, zero_division=nan))
    assert same(float(precision(s, y, threshold=threshold)), skm.precision_score(labels, pred, zero_division=nan))
    assert same(float(f1(s, y, threshold=threshold)), skm.f1_score(labels, pred, zero_division=nan))


def test_batched_rows_equal_row_by_row():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (7, 30), generator=g).double() / 4
    labels = torch.randint(0, 2, (7, 30), generator=g)
    labels[0] = 1  # one class only: NaN
    for fn in (auroc, auprc, accuracy, sensitivity, specificity, precision, f1):
        rows = torch.stack([fn(scores[i], labels[i]) for i in range(7)])
        assert torch.allclose(fn(scores, labels), rows, equal_nan=True)
    assert math.isnan(float(auroc(scores[0], labels[0])))
    assert float(auprc(scores[0], labels[0])) == 1.0


def test_edge_cases():
    s = torch.tensor([0.1, 0.9, float("nan"), 0.4])
    y = torch.tensor([0, 1, 1, 0])
    assert math.isnan(float(auroc(s, y))) and math.isnan(float(accuracy(s, y)))
    assert float(auroc(torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0, 1, 1]))) == 0.5  # all tied
    assert float(auroc(torch.tensor([0.2, 0.8]), torch.tensor([True, False]))) == 0.0
    assert math.isnan(float(sensitivity(torch.tensor([0.9, 0.1]), torch.tensor([0, 0]))))
    with pytest.raises(ValueError, match="shape"):
        auroc(torch.rand(4), torch.ones(5))


def ece_reference(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """Guo et al. (2017) with top-label confidence, one sample at a time."""
    if probs.ndim == 1:
        probs = np.stack([1 - probs, probs], axis=1)
        pred = (probs[:, 1] >= 0.5).astype(int)
    else:
        pred = probs.argmax(1)
    conf = probs[np.arange(len(probs)), pred]
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = [i for i in range(len(conf)) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)]
        if inside:
            acc = np.mean([pred[i] == labels[i] for i in inside])
            total += len(inside) / len(conf) * abs(acc - np.mean(conf[inside]))
    return total


@FAST
@given(st.integers(1, 60), st.integers(2, 4), st.sampled_from([1, 5, 15]), st.integers(0, 10_000))
def test_ece_equals_loop_reference(n, k, n_bins, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    multi = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, k, n)
    got = float(expected_calibration_error(torch.tensor(multi), torch.tensor(labels), n_bins=n_bins))
    assert abs(got - ece_reference(multi, labels, n_bins)) < 1e-12
    binary = np.round(rng.random(n), 1)  # ties and exact bin edges
    labels01 = rng.integers(0, 2, n)
    got = float(expected_calibration_error(torch.tensor(binary), torch.tensor(labels01), n_bins=n_bins))
    assert abs(got - ece_reference(binary, labels01, n_bins)) < 1e-12


def test_ece_perfect_and_worst():
    assert float(expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([1, 0]))) == 0.0
    assert float(expected_calibration_error(torch.tensor([1.0, 0.0]), torch.tensor([0, 1]))) == 1.0
    assert math.isnan(float(expected_calibration_error(torch.tensor([]), torch.tensor([]))))
