"""Performance floors: AUROC, sensitivity and specificity with bootstrap CIs (seeds 000 and 004)."""

from __future__ import annotations

from harness.checks.context import ModelContext
from harness.checks.registry import Measurement, register_check
from harness.metrics import auroc, bootstrap_statistic, sensitivity, specificity


def _bootstrapped(metric: str, fn, ctx: ModelContext, split: str, n_boot: int, seed: int,
                  **details) -> Measurement:
    labels = ctx.dataset(split).labels
    probs = ctx.probs(split)
    boot = bootstrap_statistic(fn, probs, labels, n_boot=n_boot, seed=seed)
    return Measurement(metric, boot.estimate, boot.low, boot.high, boot.n,
                       {"split": split, "n_positive": int(labels.sum()), **details})


@register_check("auroc", category="performance", needs_explainer=False)
def check_auroc(ctx: ModelContext, explainer: str | None = None, *, split: str = "test",
                n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Area under the ROC curve of the positive class, percentile bootstrap CI over images."""
    return _bootstrapped("auroc", auroc, ctx, split, n_boot, seed)


@register_check("sensitivity", category="performance", needs_explainer=False)
def check_sensitivity(ctx: ModelContext, explainer: str | None = None, *, split: str = "test",
                      threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Sensitivity (recall of positives) at a probability threshold, bootstrap CI."""
    fn = lambda p, y: sensitivity(p, y, threshold=threshold)  # noqa: E731
    return _bootstrapped("sensitivity", fn, ctx, split, n_boot, seed, threshold=threshold)


@register_check("specificity", category="performance", needs_explainer=False)
def check_specificity(ctx: ModelContext, explainer: str | None = None, *, split: str = "test",
                      threshold: float = 0.5, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Specificity (recall of negatives) at a probability threshold, bootstrap CI."""
    fn = lambda p, y: specificity(p, y, threshold=threshold)  # noqa: E731
    return _bootstrapped("specificity", fn, ctx, split, n_boot, seed, threshold=threshold)
