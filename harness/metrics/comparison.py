"""Comparisons across models: one-way ANOVA with Tukey HSD, and Spearman correlation across architectures."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class TukeyPair:
    """One pairwise comparison of Tukey's HSD test.

    Attributes:
        group_a: first group.
        group_b: second group.
        mean_difference: ``mean(a) - mean(b)``.
        low: lower bound of the simultaneous ``1 - alpha`` confidence interval of the difference.
        high: upper bound of that interval.
        p: family-wise adjusted p-value.
        reject: ``p < alpha``: the two means differ.
    """

    group_a: str
    group_b: str
    mean_difference: float
    low: float
    high: float
    p: float
    reject: bool


@dataclass(frozen=True)
class AnovaResult:
    """One-way ANOVA across groups with the Tukey HSD pairwise table.

    Attributes:
        f: the F statistic.
        p: its p-value; ``reject`` is ``p < alpha``.
        groups: group names, in the input's order.
        n: finite values per group.
        means: mean per group.
        pairs: every pair ``(i < j)`` of groups, in input order.
        n_excluded: NaN values excluded (empty masks, undefined metrics), over all groups.
        alpha: the significance level (0.05 in seed 000).
    """

    f: float
    p: float
    groups: tuple[str, ...]
    n: tuple[int, ...]
    means: tuple[float, ...]
    pairs: tuple[TukeyPair, ...]
    n_excluded: int
    alpha: float

    @property
    def reject(self) -> bool:
        return bool(self.p < self.alpha)

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), reject=self.reject)


@dataclass(frozen=True)
class CorrelationResult:
    """Spearman rank correlation with its two-sided p-value.

    Attributes:
        rho: Spearman's rho in [-1, 1] (NaN when undefined).
        p: two-sided p-value of ``rho = 0`` (NaN when undefined).
        n: pairs used.
        n_excluded: pairs dropped because either value is NaN.
    """

    rho: float
    p: float
    n: int
    n_excluded: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def anova_tukey(groups: Mapping[str, Any], *, alpha: float = 0.05) -> AnovaResult:
    """One-way ANOVA of per-image values across groups, then Tukey's HSD on every pair.

    The cross-architecture statistics of seed 000 (Sun et al.: DiffGradCAM of VGG, ResNet and ViT
    models, one-way ANOVA and Tukey post-hoc, p < 0.05). Fisher's F test via
    ``scipy.stats.f_oneway``; Tukey's honestly significant difference (Tukey 1949; Tukey-Kramer for
    unequal sizes) via ``scipy.stats.tukey_hsd``, whose intervals are simultaneous at ``1 - alpha``.

    Edge cases: NaN values are dropped per group and counted in ``n_excluded``; a group needs at
    least two finite values and there must be at least two groups (``ValueError`` otherwise).
    When every group is constant, F, p and the Tukey table follow scipy (F = inf and p = 0 when the
    means differ; NaN p-values when all values are equal, and then nothing is rejected).

    Args:
        groups: group name -> per-image values (tensor, array or sequence).
        alpha: significance level of the test and of the Tukey intervals.

    Returns:
        ``AnovaResult`` (frozen; ``to_dict()`` for the results file).
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    names = tuple(str(name) for name in groups)
    samples, excluded = _finite_samples(groups.values())
    if len(samples) < 2 or min(len(s) for s in samples) < 2:
        raise ValueError(f"anova_tukey needs >= 2 groups of >= 2 finite values, got sizes {[len(s) for s in samples]}")
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # constant groups: scipy warns and returns inf or NaN
        from scipy import stats  # imported here: 0.8 s that a trainer or a suite without these tables never pays

        anova = stats.f_oneway(*samples)
        tukey = stats.tukey_hsd(*samples)
        ci = tukey.confidence_interval(confidence_level=1 - alpha)
    pairs = tuple(
        TukeyPair(names[i], names[j], float(tukey.statistic[i, j]), float(ci.low[i, j]), float(ci.high[i, j]),
                  float(tukey.pvalue[i, j]), bool(tukey.pvalue[i, j] < alpha))
        for i in range(len(names)) for j in range(i + 1, len(names))
    )
    return AnovaResult(float(anova.statistic), float(anova.pvalue), names, tuple(len(s) for s in samples),
                       tuple(float(s.mean()) for s in samples), pairs, excluded, alpha)


def spearman_correlation(x: Sequence[float] | torch.Tensor | np.ndarray,
                         y: Sequence[float] | torch.Tensor | np.ndarray) -> CorrelationResult:
    """Spearman rank correlation between two per-model quantities, with its p-value.

    Spearman (1904), via ``scipy.stats.spearmanr`` (average ranks for ties; the p-value from the
    t distribution with ``n - 2`` degrees of freedom). Used across architectures: accuracy vs
    DiffGradCAM (seed 000: "accuracy and localisation are not in sync"; seed 003: the most accurate
    model localised worst), ImageNet accuracy or parameter count vs CheXpert AUROC (seed 004).

    Edge cases: pairs with a NaN are dropped and counted; fewer than three pairs, or a constant
    side, give NaN rho and p.

    Args:
        x: one value per model.
        y: one value per model, aligned with ``x``.

    Returns:
        ``CorrelationResult``.
    """
    a, b = _as_array(x), _as_array(y)
    if a.shape != b.shape:
        raise ValueError(f"x and y differ in length: {a.shape[0]} vs {b.shape[0]}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n, excluded = int(keep.sum()), int((~keep).sum())
    if n < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return CorrelationResult(math.nan, math.nan, n, excluded)
    from scipy import stats

    result = stats.spearmanr(a, b)
    return CorrelationResult(float(result.statistic), float(result.pvalue), n, excluded)


def _finite_samples(values: Any) -> tuple[list[np.ndarray], int]:
    samples, excluded = [], 0
    for v in values:
        a = _as_array(v)
        samples.append(a[~np.isnan(a)])
        excluded += int(np.isnan(a).sum())
    return samples, excluded


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu()
    return np.asarray(values, dtype=np.float64).ravel()
