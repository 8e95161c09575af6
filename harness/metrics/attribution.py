"""Where attribution goes: the share of positive attribution in a region (artifact, lesion, border, extrathoracic)."""

from __future__ import annotations

import torch

from harness.metrics.localisation import _flatten_pair, relevance_mass
from harness.metrics.registry import register_metric


@register_metric("region_share", category="attribution", higher_is_better=None, needs_mask=True)
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


@register_metric("region_share_ratio", category="attribution", higher_is_better=None, needs_mask=True)
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


@register_metric("border_share", category="attribution", higher_is_better=False)
def border_share(maps: torch.Tensor, *, width: int) -> torch.Tensor:
    """Share of positive attribution in a frame of ``width`` pixels along the image border.

    Seed 001 (ResNet-50 on NIH ChestX-ray14) flags "extrathoracic bias" as heat in the corners and
    borders, where text tags, laterality markers and positioning cues sit (Zech et al., "Variable
    generalization performance of a deep learning model to detect pneumonia", PLoS Med. 2018).
    Compare with the frame's area fraction (``border_fraction``), the share a uniform map gets.

    Args:
        maps: ``[B, ..., H, W]`` attribution maps.
        width: frame width in pixels (>= 1); a frame of ``2 * width >= min(H, W)`` covers the image.

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when the map has no positive attribution or a NaN.
    """
    m = torch.as_tensor(maps)
    frame = border_frame(tuple(m.shape[-2:]), width=width, device=m.device)
    return region_share(m, frame.expand(m.shape))


def border_frame(size: tuple[int, int], *, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool ``[H, W]`` mask of the pixels within ``width`` of the image border."""
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}")
    h, w = size
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    near_row = (rows < width) | (rows >= h - width)
    near_col = (cols < width) | (cols >= w - width)
    return near_row[:, None] | near_col[None, :]


def border_fraction(size: tuple[int, int], *, width: int) -> float:
    """Area fraction of the border frame: the ``border_share`` of a uniform map."""
    return float(border_frame(size, width=width).double().mean())


@register_metric("extrathoracic_share", category="attribution", higher_is_better=False, needs_mask=True)
def extrathoracic_share(maps: torch.Tensor, anatomy: torch.Tensor) -> torch.Tensor:
    """Share of positive attribution outside the anatomy mask (e.g. outside the lungs or thorax).

    Seed 001's "extrathoracic bias" measured against a lung or thorax mask rather than a fixed
    frame: ``region_share(maps, anatomy == 0)``. Heat outside the anatomy cannot come from the
    pathology and points at shortcuts (tags, tubes, positioning; DeGrave et al., "AI for
    radiographic COVID-19 detection selects shortcuts over signal", Nat. Mach. Intell. 2021).

    Args:
        maps: ``[B, ...]`` attribution maps.
        anatomy: ``[B, ...]`` anatomy masks (non-zero is inside the anatomy).

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when the anatomy mask covers the whole image (no outside),
        the map has no positive attribution, or the map has a NaN.
    """
    outside = torch.as_tensor(anatomy) == 0
    return region_share(maps, outside)
