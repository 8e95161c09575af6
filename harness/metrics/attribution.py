"""Where attribution goes: the share of positive attribution inside a region (artifact, lesion, border)."""

from __future__ import annotations

import torch

from harness.metrics.localisation import _flatten_pair, relevance_mass


def region_share(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Positive attribution inside the region divided by all positive attribution.

    The shortcut measure: a pneumothorax model whose attribution sits on the chest drain rather than
    the lung (Oakden-Rayner et al., "Hidden stratification", ACM CHIL 2020) shows a high share on the
    drain's mask. Same quantity as the relevance mass accuracy of Arras et al. (Information Fusion
    2022) with the region in place of the ground truth. Works on raw or [0,1] maps; invariant to
    positive rescaling (not to shifts: compare maps under one view).

    Args:
        maps: ``[B, ...]`` attribution maps.
        regions: ``[B, ...]`` region masks (non-zero is inside).

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when the region is empty, the map has no positive
        attribution, or the map has a NaN.
    """
    return relevance_mass(maps, regions)  # the same quantity as relevance mass accuracy, on any region


def region_share_ratio(maps: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """``region_share / (region area / image area)``: attribution concentration on the region.

    1 means no preference (the region receives the share its area predicts, as a uniform map would),
    above 1 concentration on the region, below 1 avoidance. Ranges over [0, N / |region|].

    Args:
        maps: ``[B, ...]`` attribution maps.
        regions: ``[B, ...]`` region masks (non-zero is inside).

    Returns:
        float64 ``[B]``; NaN where ``region_share`` is NaN.
    """
    _, s = _flatten_pair(maps, regions)
    area_fraction = s.mean(1)
    return region_share(maps, regions) / area_fraction
