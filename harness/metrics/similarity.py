"""Similarity of two batches of maps: rank (Spearman) and linear (Pearson) correlation per image.

Registered in the metric registry (category ``similarity``, no direction: a randomisation check
wants low similarity, a stability check high). Structural similarities (SSIM, HOG) live in
:mod:`harness.metrics.structural`.
"""

from __future__ import annotations

import torch

from harness.metrics.registry import register_metric


def tie_groups(sorted_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last position of each element's run of equal values along the last dim.

    Args:
        sorted_values: ``[..., N]`` sorted along the last dimension.

    Returns:
        ``(first, last)``, int64 ``[..., N]``: for position ``j``, the positions where the run of
        values equal to ``sorted_values[..., j]`` starts and ends. NaNs never equal anything, so
        each NaN is a run of its own.
    """
    n = sorted_values.shape[-1]
    pos = torch.arange(n, device=sorted_values.device).expand_as(sorted_values)
    differs = sorted_values[..., 1:] != sorted_values[..., :-1]
    edge = torch.ones_like(differs[..., :1])
    starts = torch.cat([edge, differs], dim=-1)
    ends = torch.cat([differs, edge], dim=-1)
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(-1).values
    last_rev = torch.where(ends, pos, torch.full_like(pos, n)).flip(-1).cummin(-1).values
    return first, last_rev.flip(-1)


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks along the last dim, ties sharing their average rank (``scipy.stats.rankdata``).

    Args:
        values: ``[..., N]`` real tensor.

    Returns:
        float64 ``[..., N]`` ranks. Rows containing NaN get meaningless ranks; callers mask them.
    """
    x = values.detach().to(torch.float64)
    sorted_values, order = x.sort(dim=-1, stable=True)
    first, last = tie_groups(sorted_values)
    ranks_sorted = (first + last).to(torch.float64) / 2 + 1
    return torch.empty_like(ranks_sorted).scatter_(-1, order, ranks_sorted)


@register_metric("pearson", category="similarity", higher_is_better=None)
def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per image over the flattened maps.

    Args:
        a: ``[B, ...]`` maps.
        b: ``[B, ...]`` maps with as many elements per image as ``a``.

    Returns:
        float64 ``[B]`` in [-1, 1]; NaN for a constant row (zero variance) or a row with NaN.
    """
    x, y = _rows(a, b)
    return _correlation(x, y)


@register_metric("spearman", category="similarity", higher_is_better=None)
def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per image over the flattened maps (Spearman 1904).

    The similarity of the model-randomisation sanity check (Adebayo et al., "Sanity Checks for
    Saliency Maps", NeurIPS 2018). Equals ``scipy.stats.spearmanr`` row by row: Pearson correlation
    of average ranks, so ties are handled as scipy does. Invariant to strictly increasing
    transformations of either map.

    Args:
        a: ``[B, ...]`` maps.
        b: ``[B, ...]`` maps with as many elements per image as ``a``.

    Returns:
        float64 ``[B]`` in [-1, 1]; NaN for a constant row (undefined correlation) or a row with NaN.
    """
    x, y = _rows(a, b)
    nan_rows = x.isnan().any(1) | y.isnan().any(1)
    rho = _correlation(average_ranks(x), average_ranks(y))
    return torch.where(nan_rows, torch.full_like(rho, float("nan")), rho)


@register_metric("spearman_abs", category="similarity", higher_is_better=None)
def spearman_abs(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of the absolute maps, per image.

    The second rank similarity of Adebayo et al. (NeurIPS 2018), which report Spearman "with and
    without absolute value": the sign of a gradient map flips easily under randomisation while its
    magnitude pattern may persist, so both are worth reading. Same edge cases as :func:`spearman`
    (a map constant in magnitude, e.g. ``+-c`` everywhere, gives NaN).

    Args:
        a: ``[B, ...]`` maps.
        b: ``[B, ...]`` maps with as many elements per image as ``a``.

    Returns:
        float64 ``[B]`` in [-1, 1]; NaN for a row constant in magnitude or a row with NaN.
    """
    return spearman(a.abs(), b.abs())


def _rows(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    x, y = a.detach().flatten(1).to(torch.float64), b.detach().flatten(1).to(torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"maps differ in size per image: {tuple(a.shape)} vs {tuple(b.shape)}")
    return x, y


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xc = x - x.mean(1, keepdim=True)
    yc = y - y.mean(1, keepdim=True)
    sxx, syy = (xc * xc).sum(1), (yc * yc).sum(1)
    rho = ((xc * yc).sum(1) / (sxx * syy).sqrt()).clamp(-1.0, 1.0)
    constant = (x.amax(1) == x.amin(1)) | (y.amax(1) == y.amin(1))
    return torch.where(constant, torch.full_like(rho, float("nan")), rho)
