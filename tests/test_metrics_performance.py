"""Performance metrics against scikit-learn (ties included), a loop reference for ECE, multi-label and subgroups."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from harness.metrics import (
    SubgroupResult,
    accuracy,
    age_bands,
    auprc,
    auroc,
    expected_calibration_error,
    f1,
    fnr,
    fpr,
    macro,
    macro_auroc,
    per_class,
    precision,
    sensitivity,
    specificity,
    subgroup_metric,
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
    assert same(float(accuracy(s, y, threshold=threshold)), skm.accuracy_score(labels, pred))
    tn, fp, fn, tp = skm.confusion_matrix(labels, pred, labels=[0, 1]).ravel()
    assert same(float(fpr(s, y, threshold=threshold)), fp / (fp + tn) if fp + tn else nan)
    assert same(float(fnr(s, y, threshold=threshold)), fn / (fn + tp) if fn + tp else nan)
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
    for fn in (auroc, auprc, accuracy, sensitivity, specificity, precision, f1, fpr, fnr):
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
    assert float(auroc([0.1, 0.1 + 1e-10], [0, 1])) == 1.0  # Python floats are read as float64, not float32
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


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        accuracy(torch.rand(4), torch.ones(4), 0.3)  # type: ignore[misc]
    with pytest.raises(TypeError):
        expected_calibration_error(torch.rand(4), torch.ones(4), 5)  # type: ignore[misc]


def multilabel(seed: int, n: int = 40, k: int = 5):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < rng.uniform(0.1, 0.6, k)).astype(int)
    scores = np.round(labels * 0.3 + rng.random((n, k)), 1)  # informative, with ties
    return scores, labels


@FAST
@given(st.integers(0, 10_000))
def test_per_class_and_macro_equal_sklearn(seed):
    scores, labels = multilabel(seed)
    labels[:, 0] = 0  # a class without positives: NaN, left out of the macro mean
    s, y = torch.tensor(scores), torch.tensor(labels)
    per = per_class(auroc, s, y)
    assert per.shape == (5,) and per.dtype == torch.float64 and math.isnan(float(per[0]))
    defined = [j for j in range(5) if 0 < labels[:, j].sum() < 40]
    reference = skm.roc_auc_score(labels[:, defined], scores[:, defined], average=None)
    np.testing.assert_allclose(per[defined].numpy(), reference, atol=1e-12)
    assert same(float(macro_auroc(s, y)), float(np.mean(reference)))
    assert same(float(macro(auroc, s, y)), float(np.mean(reference)))
    np.testing.assert_allclose(per_class(auprc, s, y)[defined].numpy(),
                               skm.average_precision_score(labels[:, defined], scores[:, defined], average=None),
                               atol=1e-12)
    ours_f1 = per_class(f1, s, y, threshold=0.5)[defined].numpy()
    np.testing.assert_allclose(ours_f1, skm.f1_score(labels[:, defined], (scores[:, defined] >= 0.5).astype(int),
                                                     average=None, zero_division=np.nan), atol=1e-12)


def test_macro_is_batched_over_bootstrap_replicates():
    scores, labels = multilabel(3)
    s, y = torch.tensor(scores), torch.tensor(labels)
    index = torch.randint(0, 40, (6, 40), generator=torch.Generator().manual_seed(0))
    batched = macro_auroc(s[index], y[index])  # [6, N, K] -> [6]
    assert batched.shape == (6,)
    expected = torch.stack([macro_auroc(s[i], y[i]) for i in index])
    assert torch.allclose(batched, expected, equal_nan=True)
    assert math.isnan(float(macro_auroc(s, torch.zeros_like(y))))  # no class defined
    with pytest.raises(ValueError, match="N, K"):
        per_class(auroc, s[:, 0], y[:, 0])


def test_subgroup_metric_equals_sklearn_per_group():
    rng = np.random.default_rng(0)
    n = 300
    sex = rng.choice(["F", "M"], n)
    labels = rng.integers(0, 2, n)
    scores = np.round(np.where(sex == "F", 0.6, 0.2) * labels + rng.random(n) * 0.8, 2)
    result = subgroup_metric(auroc, torch.tensor(scores), torch.tensor(labels), sex)
    assert isinstance(result, SubgroupResult) and result.groups == ("F", "M")
    expected = [skm.roc_auc_score(labels[sex == g], scores[sex == g]) for g in ("F", "M")]
    np.testing.assert_allclose(result.values, expected, atol=1e-12)
    assert result.n == (int((sex == "F").sum()), int((sex == "M").sum()))
    assert result.n_positive == tuple(int(labels[sex == g].sum()) for g in ("F", "M"))
    assert result.gap == pytest.approx(max(expected) - min(expected), abs=1e-12)
    assert (result.highest, result.lowest, result.n_undefined) == ("F", "M", 0)
    assert set(result.to_dict()) >= {"groups", "values", "gap", "n_undefined"}
    sens = subgroup_metric(sensitivity, torch.tensor(scores), torch.tensor(labels), sex, threshold=0.7)
    pred = (scores >= 0.7).astype(int)
    np.testing.assert_allclose(sens.values, [skm.recall_score(labels[sex == g], pred[sex == g]) for g in ("F", "M")])


def test_subgroup_single_class_groups_are_nan_excluded_and_counted():
    scores = torch.tensor([0.9, 0.2, 0.8, 0.3, 0.7, 0.6, 0.1, 0.4])
    labels = torch.tensor([1, 0, 1, 0, 1, 1, 0, 0])
    ages = [30, 35, 50, 55, 70, 72, 85, 90]
    bands = age_bands(ages)
    assert bands == ["<40", "<40", "40-59", "40-59", "60-79", "60-79", ">=80", ">=80"]
    result = subgroup_metric(accuracy, scores, labels, bands)
    # 60-79 holds positives only, >=80 negatives only: NaN for every metric, even accuracy
    assert result.groups == ("40-59", "60-79", "<40", ">=80")
    assert math.isnan(result.values[1]) and math.isnan(result.values[3])
    assert result.n_undefined == 2 and result.gap == 0.0
    one = subgroup_metric(auroc, scores, labels, [0, 0, 1, 1, 2, 2, 2, 2])  # integer groups
    assert one.groups == ("0", "1", "2") and one.n_undefined == 0
    lone = subgroup_metric(auroc, scores[:4], labels[:4], [0, 0, 1, 1])
    assert lone.values == (1.0, 1.0) and lone.gap == 0.0
    none = subgroup_metric(auroc, scores[4:6], labels[4:6], [0, 1])
    assert math.isnan(none.gap) and none.highest is None and none.n_undefined == 2
    assert age_bands([float("nan"), 40, 59.5, 60], edges=(40, 60)) == ["unknown", "40-59", "40-59", ">=60"]
    with pytest.raises(ValueError, match="group labels"):
        subgroup_metric(auroc, scores, labels, [0, 1])
