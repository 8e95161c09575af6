"""Classification performance: AUROC, AUPRC, threshold metrics and calibration, batched over rows.

Every function takes ``scores`` (probabilities or logits of the positive class) and binary
``labels`` (0/1 or bool; non-zero is positive) of shape ``[..., N]`` and reduces the last
dimension, so ``[n_boot, N]`` resamples are scored in one call. Results are float64 tensors of the
leading shape (0-d for 1-D input). A row with a NaN score gives NaN; an undefined ratio (for
example sensitivity without positives) gives NaN, where scikit-learn would warn and return 0.

Multi-label data (``scores`` and multi-hot ``labels`` of shape ``[..., N, K]``, seed 001's 14
pathologies) goes through ``per_class`` (``[..., K]``) and ``macro`` (the NaN-ignoring mean over
classes), which work with every metric here except ``expected_calibration_error``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from harness.metrics.registry import register_metric
from harness.metrics.similarity import average_ranks, tie_groups

NAN = float("nan")


@register_metric("auroc", category="performance")
def auroc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Area under the ROC curve via the Mann-Whitney U statistic (Hanley & McNeil, Radiology 1982).

    Tie-aware: tied scores get average ranks, which counts a tied positive-negative pair as 1/2,
    exactly as ``sklearn.metrics.roc_auc_score`` (trapezoidal ROC) does.

    Args:
        scores: ``[..., N]`` scores, higher meaning more likely positive.
        labels: ``[..., N]`` binary labels.

    Returns:
        float64 ``[...]``; NaN when a row has only one class or a NaN score.
    """
    s, y = _pair(scores, labels)
    n_pos = y.sum(-1)
    n_neg = y.shape[-1] - n_pos
    rank_sum = (average_ranks(s) * y).sum(-1)
    auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return _nan_where((n_pos == 0) | (n_neg == 0) | s.isnan().any(-1), auc)


@register_metric("auprc", category="performance")
def auprc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Average precision, the step-wise area under the precision-recall curve.

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds in decreasing order
    (tied scores form one threshold), equal to ``sklearn.metrics.average_precision_score``.
    Equivalently, the mean over positives of the precision at the end of their tie group.

    Args:
        scores: ``[..., N]`` scores, higher meaning more likely positive.
        labels: ``[..., N]`` binary labels.

    Returns:
        float64 ``[...]``; NaN when a row has no positive or a NaN score (1.0 when all positive).
    """
    s, y = _pair(scores, labels)
    neg_sorted, order = (-s).sort(dim=-1, stable=True)
    y_sorted = y.gather(-1, order)
    _, last = tie_groups(neg_sorted)
    tp = y_sorted.cumsum(-1)
    precision_at_group_end = tp.gather(-1, last) / (last + 1).to(torch.float64)
    n_pos = y.sum(-1)
    ap = (y_sorted * precision_at_group_end).sum(-1) / n_pos
    return _nan_where((n_pos == 0) | s.isnan().any(-1), ap)


def confusion(scores: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """Counts ``tp, fp, tn, fn`` (float64 ``[...]``) with prediction ``score >= threshold``."""
    s, y = _pair(scores, labels)
    pred = (s >= threshold).to(torch.float64)
    tp = (pred * y).sum(-1)
    fp = (pred * (1 - y)).sum(-1)
    fn = ((1 - pred) * y).sum(-1)
    tn = ((1 - pred) * (1 - y)).sum(-1)
    nan_rows = s.isnan().any(-1)
    return {k: _nan_where(nan_rows, v) for k, v in {"tp": tp, "fp": fp, "tn": tn, "fn": fn}.items()}


@register_metric("accuracy", category="performance")
def accuracy(scores: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """Fraction of correct predictions, predicting positive when ``score >= threshold``.

    Returns:
        float64 ``[...]``; NaN for an empty row or a row with a NaN score.
    """
    c = confusion(scores, labels, threshold=threshold)
    return _ratio(c["tp"] + c["tn"], c["tp"] + c["tn"] + c["fp"] + c["fn"])


@register_metric("sensitivity", category="performance")
def sensitivity(scores: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """Sensitivity (recall, true-positive rate) ``TP / (TP + FN)`` at ``score >= threshold``.

    Returns:
        float64 ``[...]``; NaN when a row has no positive.
    """
    c = confusion(scores, labels, threshold=threshold)
    return _ratio(c["tp"], c["tp"] + c["fn"])


@register_metric("specificity", category="performance")
def specificity(scores: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """Specificity (true-negative rate) ``TN / (TN + FP)`` at ``score >= threshold``.

    Returns:
        float64 ``[...]``; NaN when a row has no negative.
    """
    c = confusion(scores, labels, threshold=threshold)
    return _ratio(c["tn"], c["tn"] + c["fp"])


@register_metric("precision", category="performance")
def precision(scores: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """Precision (positive predictive value) ``TP / (TP + FP)`` at ``score >= threshold``.

    Returns:
        float64 ``[...]``; NaN when nothing is predicted positive (scikit-learn: 0 with a warning).
    """
    c = confusion(scores, labels, threshold=threshold)
    return _ratio(c["tp"], c["tp"] + c["fp"])


@register_metric("f1", category="performance")
def f1(scores: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """F1 score ``2 TP / (2 TP + FP + FN)`` at ``score >= threshold``.

    Returns:
        float64 ``[...]``; NaN when there is no positive and no positive prediction.
    """
    c = confusion(scores, labels, threshold=threshold)
    return _ratio(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"])


@register_metric("fpr", category="performance", higher_is_better=False)
def fpr(scores: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """False-positive rate ``FP / (FP + TN)`` (``1 - specificity``) at ``score >= threshold``.

    One of the error rates VisTumor (seed 003) reports per architecture.

    Returns:
        float64 ``[...]``; NaN when a row has no negative.
    """
    c = confusion(scores, labels, threshold=threshold)
    return _ratio(c["fp"], c["fp"] + c["tn"])


@register_metric("fnr", category="performance", higher_is_better=False)
def fnr(scores: torch.Tensor, labels: torch.Tensor, *, threshold: float = 0.5) -> torch.Tensor:
    """False-negative rate ``FN / (FN + TP)`` (``1 - sensitivity``) at ``score >= threshold``.

    The missed-tumour rate of VisTumor (seed 003).

    Returns:
        float64 ``[...]``; NaN when a row has no positive.
    """
    c = confusion(scores, labels, threshold=threshold)
    return _ratio(c["fn"], c["fn"] + c["tp"])


def per_class(metric: Callable[..., torch.Tensor], scores: torch.Tensor, labels: torch.Tensor,
              **options: Any) -> torch.Tensor:
    """One value per class of a multi-label problem: ``metric`` on each column of ``[..., N, K]``.

    The per-pathology AUROC of seed 001 (NIH ChestX-ray14, 14 sigmoid outputs). The class axis is
    moved in front of the sample axis, so the metric scores all classes (and all bootstrap
    replicates ``[n_boot, N, K]``) in one batched call. Equals scikit-learn's
    ``roc_auc_score(labels, scores, average=None)`` for ``metric=auroc``.

    Args:
        metric: any metric of this module that reduces the last axis (not the ECE).
        scores: ``[..., N, K]`` per-class scores.
        labels: ``[..., N, K]`` multi-hot labels.
        **options: keyword options of the metric (e.g. ``threshold``).

    Returns:
        float64 ``[..., K]``; NaN for a class that the metric leaves undefined (e.g. no positive).
    """
    s, y = torch.as_tensor(scores), torch.as_tensor(labels)
    if s.ndim < 2:
        raise ValueError(f"per_class needs [..., N, K] scores, got shape {tuple(s.shape)}")
    return metric(s.transpose(-1, -2), y.transpose(-1, -2), **options)


def macro(metric: Callable[..., torch.Tensor], scores: torch.Tensor, labels: torch.Tensor,
          **options: Any) -> torch.Tensor:
    """Macro average: the mean over classes of ``per_class``, ignoring undefined (NaN) classes.

    A class with one label value only (no positive in the split), or with a NaN score, is left out
    of the mean rather than failing the whole average; the value is NaN when no class is defined.
    Call ``per_class`` to count the classes left out. scikit-learn's ``average="macro"`` raises
    instead when any class has a single label value.

    Returns:
        float64 ``[...]``.
    """
    return per_class(metric, scores, labels, **options).nanmean(-1)


@register_metric("macro_auroc", category="performance")
def macro_auroc(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Macro AUROC of multi-label scores ``[..., N, K]``: mean per-class AUROC over defined classes.

    The headline metric of seeds 001 (NIH, 14 pathologies) and 004 (CheXtransfer, mean over the
    competition tasks). See ``per_class`` and ``macro``.

    Returns:
        float64 ``[...]``; NaN when no class has both label values.
    """
    return macro(auroc, scores, labels)


@register_metric("expected_calibration_error", category="performance", higher_is_better=False)
def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, *, n_bins: int = 15) -> torch.Tensor:
    """Expected calibration error of the top-label confidence (Guo et al., ICML 2017).

    ``ECE = sum_b (n_b / N) |acc_b - conf_b|`` over ``n_bins`` equal-width confidence bins
    ``(b/n_bins, (b+1)/n_bins]`` (confidence 0 falls in the first bin). For binary ``probs`` ``[N]``
    (probability of class 1) the prediction is ``p >= 0.5`` and the confidence ``max(p, 1 - p)``;
    for ``[N, K]`` probabilities it is the arg-max class and its probability.

    Args:
        probs: ``[N]`` positive-class probabilities or ``[N, K]`` class probabilities.
        labels: ``[N]`` integer class labels.
        n_bins: number of equal-width bins over [0, 1].

    Returns:
        float64 0-d tensor in [0, 1]; NaN for empty input or a NaN probability.
    """
    p = probs.detach().to(torch.float64)
    y = labels.detach().reshape(-1).to(p.device).long()
    if p.ndim == 1:
        pred = (p >= 0.5).long()
        conf = torch.where(pred == 1, p, 1 - p)
    elif p.ndim == 2:
        conf, pred = p.max(-1)
    else:
        raise ValueError(f"probs must be [N] or [N,K], got shape {tuple(p.shape)}")
    if y.shape[0] != conf.shape[0]:
        raise ValueError(f"{conf.shape[0]} predictions but {y.shape[0]} labels")
    if conf.numel() == 0 or p.isnan().any():
        return torch.tensor(NAN, dtype=torch.float64, device=p.device)
    inner_edges = torch.arange(1, n_bins, dtype=torch.float64, device=p.device) / n_bins
    bins = torch.bucketize(conf, inner_edges, right=False)  # edges[b-1] < conf <= edges[b]
    gap = torch.zeros(n_bins, dtype=torch.float64, device=p.device)
    gap.index_add_(0, bins, (pred == y).to(torch.float64) - conf)
    return gap.abs().sum() / conf.numel()


def _pair(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(scores, dtype=torch.float64).detach()
    y = torch.as_tensor(labels).detach().to(s.device)
    if s.shape != y.shape:
        raise ValueError(f"scores {tuple(s.shape)} and labels {tuple(y.shape)} differ in shape")
    return s, (y != 0).to(torch.float64)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return _nan_where(den == 0, num / den)


def _nan_where(condition: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(condition, torch.full_like(values, NAN), values)
