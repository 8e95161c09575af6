"""Performance floors with bootstrap CIs (seeds 000-004): discrimination, threshold metrics, calibration, subgroups.

Binary models are scored on P(positive); multi-label models (sigmoid outputs ``[N,K]``) per finding
(``finding``) or macro-averaged over findings (``macro_auroc``, seed 001). Each check resamples
patients, with all their images (cluster percentile bootstrap, 1,000 replicates, seeded).
"""

from __future__ import annotations

from typing import Callable

import torch

from harness.explain.context import ModelContext
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.checks.samples import statistic_samples, with_samples
from harness.metrics import (
    accuracy,
    auprc,
    auroc,
    bootstrap_statistic,
    cluster_resamples,
    expected_calibration_error,
    f1,
    fnr,
    fpr,
    macro_auroc,
    precision,
    sensitivity,
    specificity,
)
from harness.metrics.subgroups import age_bands, subgroup_metric


def scores_and_labels(ctx: ModelContext, split: str, finding: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[N]`` scores and labels of one finding (binary models: the positive class)."""
    probs, data = ctx.probs(split), ctx.dataset(split)
    if probs.ndim == 1:
        return probs, data.labels
    k = data.finding_index(finding) if finding else ctx.target_class
    return probs[:, k], data.labels[:, k]


def _bootstrapped(metric: str, fn: Callable, ctx: ModelContext, split: str, n_boot: int, seed: int,
                  finding: str | None = None, **details) -> Measurement:
    scores, labels = scores_and_labels(ctx, split, finding)
    boot = bootstrap_statistic(fn, scores, labels, groups=ctx.patients(split), n_boot=n_boot, seed=seed)
    options = {k: details[k] for k in ("threshold", "n_bins") if k in details}  # the metric's own options
    boot = with_samples(boot, statistic_samples(ctx, split, metric, options, scores, labels))
    return Measurement.of(metric, boot, {"split": split, "n_positive": int(labels.sum()), "finding": finding,
                                         **details})


def _register_threshold_metric(name: str, fn: Callable, description: str) -> None:
    def check(ctx: ModelContext, explainer: str | None = None, *, split: str = "test", threshold: float = 0.5,
              finding: str | None = None, n_boot: int = 1000, seed: int = 0) -> Measurement:
        metric = lambda p, y: fn(p, y, threshold=threshold)  # noqa: E731
        return _bootstrapped(name, metric, ctx, split, n_boot, seed, finding, threshold=threshold)

    check.__doc__ = description
    check.__name__ = check.__qualname__ = f"check_{name}"
    register_check(name, category="performance", needs_explainer=False)(check)


for _name, _fn, _doc in (
    ("sensitivity", sensitivity, "Sensitivity (recall of positives) at a probability threshold, bootstrap CI."),
    ("specificity", specificity, "Specificity (recall of negatives) at a probability threshold, bootstrap CI."),
    ("accuracy", accuracy, "Accuracy at a probability threshold, bootstrap CI."),
    ("precision", precision, "Precision (positive predictive value) at a probability threshold, bootstrap CI."),
    ("f1", f1, "F1 score at a probability threshold, bootstrap CI."),
    ("fpr", fpr, "False-positive rate at a probability threshold (seed 003), bootstrap CI; lower is better."),
    ("fnr", fnr, "False-negative rate at a probability threshold (seed 003), bootstrap CI; lower is better."),
):
    _register_threshold_metric(_name, _fn, _doc)


@register_check("auroc", category="performance", needs_explainer=False)
def check_auroc(ctx: ModelContext, explainer: str | None = None, *, split: str = "test", finding: str | None = None,
                n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Area under the ROC curve of the positive class (or one finding), percentile bootstrap CI over images."""
    return _bootstrapped("auroc", auroc, ctx, split, n_boot, seed, finding)


@register_check("auprc", category="performance", needs_explainer=False)
def check_auprc(ctx: ModelContext, explainer: str | None = None, *, split: str = "test", finding: str | None = None,
                n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Area under the precision-recall curve (average precision), bootstrap CI."""
    return _bootstrapped("auprc", auprc, ctx, split, n_boot, seed, finding)


@register_check("calibration", category="performance", needs_explainer=False)
def check_calibration(ctx: ModelContext, explainer: str | None = None, *, split: str = "test", n_bins: int = 15,
                      finding: str | None = None, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Expected calibration error (Guo et al. 2017, equal-width bins), bootstrap CI; lower is better."""
    metric = lambda p, y: expected_calibration_error(p, y, n_bins=n_bins)  # noqa: E731
    return _bootstrapped("expected_calibration_error", metric, ctx, split, n_boot, seed, finding, n_bins=n_bins)


@register_check("macro_auroc", category="performance", needs_explainer=False)
def check_macro_auroc(ctx: ModelContext, explainer: str | None = None, *, split: str = "test", n_boot: int = 1000,
                      seed: int = 0) -> Measurement:
    """Mean AUROC over findings (multi-label, seed 001), with the per-finding AUROCs in the details."""
    probs, data = ctx.probs(split), ctx.dataset(split)
    if probs.ndim == 1:
        raise CheckSkipped(f"model {ctx.name!r} is binary: use auroc")
    boot = bootstrap_statistic(macro_auroc, probs, data.labels, groups=ctx.patients(split), n_boot=n_boot, seed=seed)
    per_finding = {name: float(auroc(probs[:, k], data.labels[:, k])) for k, name in enumerate(data.finding_names)}
    return Measurement.of("macro_auroc", boot, {"split": split, "per_finding_auroc": per_finding})


@register_check("subgroup_gap", category="performance", needs_explainer=False, reference="the other subgroups")
def check_subgroup_gap(ctx: ModelContext, explainer: str | None = None, *, attribute: str = "sex",
                       metric: str = "auroc", split: str = "test", finding: str | None = None,
                       n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Largest difference of a metric between patient subgroups (``sex``, ``age`` in bands), bootstrap CI; lower is better."""
    data = ctx.dataset(split)
    if attribute not in getattr(data, "metadata", {}):
        known = ", ".join(sorted(getattr(data, "metadata", {}))) or "none"
        raise CheckSkipped(f"dataset {data.name} has no patient attribute {attribute!r} (it has: {known})")
    values = data.metadata[attribute]
    groups = age_bands(values) if attribute == "age" else values
    groups = list(groups) if not torch.is_tensor(groups) else groups
    metrics = {"auroc": auroc, "sensitivity": sensitivity, "specificity": specificity, "accuracy": accuracy}
    if metric not in metrics:
        raise ValueError(f"subgroup_gap metric must be one of {', '.join(metrics)}, got {metric!r}")
    fn = metrics[metric]
    scores, labels = scores_and_labels(ctx, split, finding)
    result = subgroup_metric(fn, scores, labels, groups)
    patients = ctx.patients(split)
    boot = _gap_bootstrap(fn, scores, labels, groups, patients, n_boot, seed)
    return Measurement(f"{metric}_gap[{attribute}]", result.gap, boot[0], boot[1], len(labels),
                       {"split": split, **result.to_dict()}, int(torch.unique(patients).numel()))


def _gap_bootstrap(fn, scores, labels, groups, patients, n_boot: int, seed: int) -> tuple[float, float]:
    g = torch.Generator().manual_seed(seed)
    gaps = []
    for pick in cluster_resamples(patients, n_boot, g):
        picked = groups[pick] if torch.is_tensor(groups) else [groups[i] for i in pick.tolist()]
        gaps.append(subgroup_metric(fn, scores[pick], labels[pick], picked).gap)
    gaps_t = torch.tensor(gaps, dtype=torch.float64)
    gaps_t = gaps_t[torch.isfinite(gaps_t)]
    if gaps_t.numel() == 0:
        return float("nan"), float("nan")
    low, high = torch.quantile(gaps_t, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return low, high
