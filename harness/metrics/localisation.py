"""Localisation of saliency maps against ground-truth masks, batched over images.

Conventions shared by every function here:

* ``maps`` and ``masks`` are ``[B, ...]`` (typically ``[B,1,H,W]``) with the same number of
  elements per image; a mask element is inside when it is non-zero (as Quantus' ``astype(bool)``).
* Functions whose first argument is ``maps01`` expect the explainer's [0,1] view
  (``explainer.unit_view(raw)``) and raise ``ValueError`` on values outside [0,1].
* ``segment_maps``, ``segmentation_iou`` and ``miou`` take raw maps at any resolution and follow
  CheXlocalize: bilinear resize to the mask's size, per-image min-max, threshold.
* An empty mask gives NaN (never a silent hit or miss), so checks exclude and count it; a map with
  a NaN gives NaN. Results are float64 ``[B]`` on the maps' device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness.metrics.performance import auroc
from harness.metrics.registry import register_metric
from harness.data.texture import gaussian_blur

NAN = float("nan")
_UNIT_TOLERANCE = 1e-6
_OTSU_TIE = 1e-12  # relative: between-class variances this close are ties (broken by the lowest level)


@register_metric("diffgradcam", category="localisation", needs_mask=True)
def diffgradcam(maps01: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean of the [0,1] map inside the mask minus its mean outside (DiffGradCAM).

    Sun et al., "Evaluating Grad-CAM for pneumothorax diagnosis with CNNs and ViTs" (seed 000):
    an effective map "should generate a high positive DiffGradCAM" because heat should accumulate
    inside the pathology.

    Args:
        maps01: ``[B, ...]`` maps in [0, 1].
        masks: ``[B, ...]`` ground-truth masks.

    Returns:
        float64 ``[B]`` in [-1, 1]; NaN when the mask is empty or covers the whole image (one of the
        two means is undefined) or the map has a NaN. A constant map scores 0.
    """
    m, s = _flatten_pair(maps01, masks)
    _check_unit(m, "diffgradcam")
    n_in = s.sum(1)
    n_out = s.shape[1] - n_in
    sum_in = (m * s).sum(1)
    sum_out = (m * (1 - s)).sum(1)
    value = sum_in / n_in - sum_out / n_out
    return _nan_where((n_in == 0) | (n_out == 0), value)


@register_metric("ehr_auc", category="localisation", needs_mask=True)
def ehr_auc(maps01: torch.Tensor, masks: torch.Tensor, *, n_thresholds: int = 100) -> torch.Tensor:
    """Area under the effective-heat-ratio curve over thresholds (EHR AUC).

    Zhang et al. (2021), used by Sun et al. (seed 000): at threshold ``t`` the effective heat ratio is
    ``EHR(t) = |{map >= t} & mask| / |{map >= t}|`` (0 when no pixel reaches ``t``). Exact choice
    here: EHR is evaluated at the ``n_thresholds`` equidistant thresholds ``t_k = k / n_thresholds``,
    ``k = 0..n_thresholds-1`` (in [0,1)), plus the closing point ``t = 1`` with the same rule (for a
    min-max view only the maximum pixels reach it); the AUC is the trapezoid rule over these
    ``n_thresholds + 1`` points with spacing ``1 / n_thresholds``, so it integrates over exactly
    [0, 1] and lies in [0, 1]. A constant all-zero map (``unit_view`` of a constant map) scores
    ``EHR(0) / (2 n_thresholds)`` (the mask's area fraction over the first half-interval).

    Computed without a ``[B, T, N]`` tensor: each pixel is bucketed once by ``torch.bucketize``
    and the counts above each threshold are reverse cumulative sums of the bucket counts.

    Args:
        maps01: ``[B, ...]`` maps in [0, 1].
        masks: ``[B, ...]`` ground-truth masks.
        n_thresholds: number of thresholds in [0, 1) (the curve has one more point, at t = 1).

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when the mask is empty or the map has a NaN.
    """
    if n_thresholds < 1:
        raise ValueError(f"n_thresholds must be >= 1, got {n_thresholds}")
    ehr = ehr_curve(maps01, masks, n_thresholds=n_thresholds)
    auc = (ehr[:, :-1] + ehr[:, 1:]).sum(1) / (2 * n_thresholds)
    empty = torch.as_tensor(masks).flatten(1).count_nonzero(1) == 0
    return _nan_where(empty.to(auc.device), auc)


def ehr_curve(maps01: torch.Tensor, masks: torch.Tensor, *, n_thresholds: int = 100) -> torch.Tensor:
    """``EHR(t_k)`` for ``t_k = k / n_thresholds``, ``k = 0..n_thresholds`` (see ``ehr_auc``), ``[B, T+1]``.

    Rows are NaN where the map has a NaN; an empty mask gives an all-zero curve.
    """
    m, s = _flatten_pair(maps01, masks)
    _check_unit(m, "ehr_curve")
    thresholds = torch.arange(n_thresholds + 1, dtype=torch.float64, device=m.device) / n_thresholds
    bucket = torch.bucketize(m.nan_to_num(0.0), thresholds, right=True)  # number of thresholds <= value
    counts = torch.zeros(m.shape[0], n_thresholds + 2, dtype=torch.float64, device=m.device)
    above_all = counts.scatter_add(1, bucket, torch.ones_like(m)).flip(1).cumsum(1).flip(1)[:, 1:]
    above_in = counts.scatter_add(1, bucket, s).flip(1).cumsum(1).flip(1)[:, 1:]
    ehr = torch.where(above_all > 0, above_in / above_all.clamp_min(1), torch.zeros_like(above_all))
    return _nan_where(m.isnan().any(1, keepdim=True), ehr)


@register_metric("pointing_game", category="localisation", needs_mask=True)
def pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Pointing game (Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018).

    A hit iff the map's first arg-max (flattened row-major, the lowest index among ties) lies inside
    the mask, as in the CheXlocalize hit rate (Saporta et al., Nat. Mach. Intell. 2022). Works on raw
    or [0,1] maps alike and is invariant to strictly increasing rescaling of the map.

    Deliberate divergences from Quantus 0.6.0 ``PointingGame``: an empty mask is NaN here (Quantus
    scores it as a hit); with tied maxima only the first counts (Quantus: a hit if any maximum is
    inside). With a unique maximum and a non-empty mask the two agree.

    Args:
        maps: ``[B, ...]`` maps (raw or [0, 1]).
        masks: ``[B, ...]`` ground-truth masks.

    Returns:
        float64 ``[B]`` of 1.0 (hit), 0.0 (miss) or NaN (empty mask, or a NaN in the map).
    """
    m, s = _flatten_pair(maps, masks)
    hit = s.gather(1, m.argmax(1, keepdim=True)).squeeze(1)
    return _nan_where((s.sum(1) == 0) | m.isnan().any(1), hit)


def threshold_maps(maps01: torch.Tensor, *, threshold: float | str = "otsu") -> torch.Tensor:
    """Binary segmentations from [0,1] maps, as CheXlocalize's ``cam_to_segmentation``.

    ``threshold="otsu"``: the map is quantised as ``uint8(255 * map)`` and thresholded with Otsu's
    method per image (Otsu, IEEE SMC 1979; the arithmetic of OpenCV's ``THRESH_OTSU``), a pixel being
    inside when its level is above the threshold. A float threshold: inside when ``map > threshold``.

    Args:
        maps01: ``[B, ...]`` maps in [0, 1].
        threshold: ``"otsu"`` or a float in [0, 1].

    Returns:
        bool tensor of the shape of ``maps01``.
    """
    m = maps01.detach()
    _check_unit(m.flatten(1).to(torch.float64), "threshold_maps")
    if isinstance(threshold, str):
        if threshold != "otsu":
            raise ValueError(f"threshold must be a float or 'otsu', got {threshold!r}")
        levels = (255 * m.flatten(1)).nan_to_num(0.0).floor().clamp(0, 255).long()
        return (levels > otsu_levels(levels)[:, None]).view_as(m)
    return m > threshold


def otsu_levels(levels: torch.Tensor) -> torch.Tensor:
    """Otsu threshold per row of uint8 levels ``[B, N]`` (ints in 0..255), int64 ``[B]``.

    Maximises the between-class variance ``q1 q2 (mu1 - mu2)^2`` over thresholds ``k`` (class 1 =
    levels ``<= k``), skipping thresholds where a class holds less than ``FLT_EPSILON`` of the
    pixels, as OpenCV does; 0 when no threshold separates two classes. Exact ties (symmetric
    histograms, or empty bins between two levels, which give the same segmentation) are broken by
    the lowest level, with a relative tolerance of 1e-12 for rounding; OpenCV's sequential
    arithmetic takes the first maximum too, up to its own rounding.
    """
    n = levels.shape[1]
    hist = torch.zeros(levels.shape[0], 256, dtype=torch.float64, device=levels.device)
    hist.scatter_add_(1, levels, torch.full(levels.shape, 1.0 / n, dtype=torch.float64, device=levels.device))
    k = torch.arange(256, dtype=torch.float64, device=levels.device)
    q1 = hist.cumsum(1)
    m1 = (hist * k).cumsum(1)
    q2 = 1 - q1
    mu1 = m1 / q1.clamp_min(1e-300)
    mu2 = (m1[:, -1:] - m1) / q2.clamp_min(1e-300)
    sigma = q1 * q2 * (mu1 - mu2).pow(2)
    eps = torch.finfo(torch.float32).eps
    valid = (torch.minimum(q1, q2) >= eps) & (torch.maximum(q1, q2) <= 1 - eps)
    sigma = torch.where(valid, sigma, torch.zeros_like(sigma))
    best = sigma.max(1, keepdim=True).values
    near_best = (sigma >= best * (1 - _OTSU_TIE)) & (best > 0)
    return near_best.to(torch.uint8).argmax(1)  # first (near-)maximum; 0 when nothing separates


@register_metric("iou", category="localisation", needs_mask=True)
def iou(maps01: torch.Tensor, masks: torch.Tensor, *, threshold: float | str = "otsu") -> torch.Tensor:
    """Intersection over union of the thresholded map and the mask (CheXlocalize protocol).

    Saporta et al., "Benchmarking saliency methods for chest X-ray interpretation", Nat. Mach.
    Intell. 2022: heat map -> min-max -> Otsu (default) or a tuned threshold -> segmentation -> IoU,
    NaN when either the segmentation or the ground truth is empty. See ``threshold_maps``.

    Args:
        maps01: ``[B, ...]`` maps in [0, 1].
        masks: ``[B, ...]`` ground-truth masks.
        threshold: ``"otsu"`` or a float; a pixel is predicted when strictly above it.

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when either mask is empty or the map has a NaN.
    """
    m, s = _flatten_pair(maps01, masks)
    pred = threshold_maps(maps01.detach().flatten(1), threshold=threshold).to(torch.float64)
    return _nan_where(m.isnan().any(1), _binary_iou(pred, s))


@register_metric("relevance_mass", category="localisation", needs_mask=True)
def relevance_mass(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance mass accuracy: share of the positive relevance that falls inside the mask.

    Arras, Osman & Samek, "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of neural
    network explanations", Information Fusion 2022: ``R_within / R_total`` over positive relevance.
    Equals Quantus 0.6.0 ``RelevanceMassAccuracy(abs=False, normalise=False)`` on non-negative maps;
    on signed maps Quantus sums the signed values, we sum the positive part (so the value stays in
    [0, 1]). Invariant to positive rescaling; use raw maps (scale-free, but not shift-free).

    Args:
        maps: ``[B, ...]`` raw relevance maps.
        masks: ``[B, ...]`` ground-truth masks.

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when the mask is empty, the map has no positive relevance,
        or the map has a NaN.
    """
    m, s = _flatten_pair(maps, masks)
    r = m.clamp_min(0)
    total = r.sum(1)
    value = (r * s).sum(1) / total
    return _nan_where((s.sum(1) == 0) | (total == 0), value)


@register_metric("relevance_rank", category="localisation", needs_mask=True)
def relevance_rank(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance rank accuracy: fraction of the ``K`` most relevant pixels inside the mask (``K = |mask|``).

    Arras, Osman & Samek, Information Fusion 2022. Equals Quantus 0.6.0
    ``RelevanceRankAccuracy(abs=False, normalise=False)`` when values are distinct; ties are broken
    by the lower flat index first (a stable sort), where Quantus' ``np.argsort`` order is unspecified.

    Args:
        maps: ``[B, ...]`` raw relevance maps (signed values are ranked as they are).
        masks: ``[B, ...]`` ground-truth masks.

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when the mask is empty or the map has a NaN.
    """
    m, s = _flatten_pair(maps, masks)
    k = s.sum(1, keepdim=True)
    order = m.argsort(dim=1, descending=True, stable=True)
    rank = torch.arange(m.shape[1], device=m.device).expand_as(m)
    hits = (s.gather(1, order) * (rank < k)).sum(1)
    k = k.squeeze(1)
    return _nan_where((k == 0) | m.isnan().any(1), hits / k)


@register_metric("energy_pointing_game", category="localisation", needs_mask=True)
def energy_pointing_game(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Energy-based pointing game: the share of the map's positive energy inside the mask or box.

    Wang et al., "Score-CAM: Score-weighted visual explanations for convolutional neural networks",
    CVPR Workshops 2020: ``sum(L in box) / (sum(L in box) + sum(L outside))`` of the (ReLU'd) map,
    a graded version of the pointing game that rewards compact maps. The same quantity as
    ``relevance_mass`` (positive part of the map; scale-free, not shift-free: raw maps and the
    min-max view give different values, so compare methods under one view).

    Args:
        maps: ``[B, ...]`` maps (raw or [0, 1]).
        masks: ``[B, ...]`` ground-truth masks or filled bounding boxes.

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when the mask is empty, the map has no positive value, or
        the map has a NaN.
    """
    return relevance_mass(maps, masks)


@register_metric("localisation_auc", category="localisation", needs_mask=True)
def localisation_auc(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """AUROC of the map's pixels as scores against the mask's pixels as labels.

    Fawcett, "An introduction to ROC analysis", Pattern Recognit. Lett. 2006, as Quantus 0.6.0
    ``AUC(abs=False, normalise=False)``: 1 when every inside pixel outranks every outside pixel,
    0.5 for an uninformative map. Tied pixels count 1/2 (trapezoidal ROC, as scikit-learn).
    Invariant to strictly increasing rescaling of the map; ``1 - value`` for the negated map.

    Args:
        maps: ``[B, ...]`` maps (raw or [0, 1]).
        masks: ``[B, ...]`` ground-truth masks.

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when the mask is empty or covers the whole image (one class
        only; Quantus gives NaN there too), or the map has a NaN.
    """
    m, s = _flatten_pair(maps, masks)
    return auroc(m, s)


@register_metric("top_k_intersection", category="localisation", needs_mask=True)
def top_k_intersection(maps: torch.Tensor, masks: torch.Tensor, *, k: int,
                       concept_influence: bool = False) -> torch.Tensor:
    """Fraction of the ``k`` highest-valued pixels that lie inside the mask (top-k intersection).

    Theiner, Müller-Budack & Ewerth, "Interpretable semantic photo geolocation", WACV 2022 (arXiv
    2021), as Quantus 0.6.0 ``TopKIntersection(k=k, abs=False, normalise=False)``. With
    ``concept_influence`` the value is divided by the mask's area fraction (Quantus' option of the
    same name), so 1 means no preference. ``k`` has no default on purpose: pin it per image size
    (Quantus' default of 1000 exceeds a 28x28 map). Ties are broken by the lower flat index first
    (a stable sort), where Quantus' ``np.argsort`` order is unspecified; so the value is invariant
    to strictly increasing rescaling of the map.

    Args:
        maps: ``[B, ...]`` maps (raw or [0, 1]).
        masks: ``[B, ...]`` ground-truth masks.
        k: number of top pixels, ``1 <= k <= N`` (Quantus requires ``k < N``).
        concept_influence: divide by the mask's area fraction ``|mask| / N``.

    Returns:
        float64 ``[B]`` in [0, 1] (in [0, N / |mask|] with ``concept_influence``); NaN when the mask
        is empty or the map has a NaN.
    """
    m, s = _flatten_pair(maps, masks)
    if not 1 <= k <= m.shape[1]:
        raise ValueError(f"k must lie in [1, {m.shape[1]}] (pixels per image), got {k}")
    top = m.argsort(dim=1, descending=True, stable=True)[:, :k]
    value = s.gather(1, top).mean(1)
    area = s.sum(1)
    if concept_influence:
        value = value * m.shape[1] / area.clamp_min(1)
    return _nan_where((area == 0) | m.isnan().any(1), value)


def minmax_maps(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max normalisation to [0, 1] (over all elements of an image), float64.

    A constant map becomes all zeros (CheXlocalize would divide by zero); a map with a NaN stays NaN.
    """
    m = torch.as_tensor(maps).detach().to(torch.float64)
    flat = m.flatten(1)
    low = flat.amin(1, keepdim=True)
    span = flat.amax(1, keepdim=True) - low
    unit = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(torch.float64).tiny), flat - low)
    return unit.view_as(m)


def segment_maps(maps: torch.Tensor, *, size: tuple[int, int] | None = None,
                 threshold: float | str = "otsu") -> torch.Tensor:
    """CheXlocalize's heat map -> segmentation: bilinear resize, min-max, threshold.

    Saporta et al., "Benchmarking saliency methods for chest X-ray interpretation", Nat. Mach.
    Intell. 2022: ``F.interpolate(map, size, mode="bilinear", align_corners=False)``, then per-image
    min-max, then ``threshold_maps`` (Otsu on ``uint8(255 * map)`` by default, as CheXlocalize's
    ``cv2.threshold(..., THRESH_OTSU)``, or ``map > t`` for a tuned threshold). Tested against that
    pipeline; the only possible difference is the choice between two exactly tied Otsu thresholds.

    Args:
        maps: ``[B, C, h, w]`` or ``[B, h, w]`` raw maps at any resolution.
        size: output ``(H, W)``; None keeps the maps' size.
        threshold: ``"otsu"`` or a float in [0, 1] applied to the min-max view.

    Returns:
        bool tensor ``[B, C, H, W]`` (or ``[B, H, W]``).
    """
    m = torch.as_tensor(maps).detach().to(torch.float64)
    if m.ndim not in (3, 4):
        raise ValueError(f"segment_maps needs [B,C,h,w] or [B,h,w] maps, got shape {tuple(m.shape)}")
    batched = m if m.ndim == 4 else m.unsqueeze(1)
    if size is not None and tuple(batched.shape[-2:]) != tuple(size):
        batched = F.interpolate(batched, size=tuple(size), mode="bilinear", align_corners=False)
    unit = minmax_maps(batched)
    return threshold_maps(unit, threshold=threshold).view(*m.shape[:-2], *unit.shape[-2:])


@register_metric("segmentation_iou", category="localisation", needs_mask=True)
def segmentation_iou(maps: torch.Tensor, masks: torch.Tensor, *, threshold: float | str = "otsu") -> torch.Tensor:
    """IoU of the CheXlocalize segmentation of a raw map (any resolution) with the mask.

    Saporta et al., Nat. Mach. Intell. 2022: the map is resized bilinearly to the mask's size,
    min-max normalised and thresholded (``segment_maps``); IoU is NaN when either the segmentation
    or the ground truth is empty. A constant map gives an empty segmentation, hence NaN.

    Args:
        maps: ``[B, C, h, w]`` or ``[B, h, w]`` raw maps.
        masks: ``[B, C, H, W]`` or ``[B, H, W]`` ground-truth masks (their size is the target size).
        threshold: ``"otsu"`` or a float in [0, 1] on the min-max view (a tuned per-task threshold).

    Returns:
        float64 ``[B]`` in [0, 1]; NaN when either mask is empty or the map has a NaN.
    """
    seg = segment_maps(maps, size=tuple(torch.as_tensor(masks).shape[-2:]), threshold=threshold)
    pred, s = _flatten_pair(seg, masks)
    nan_rows = torch.as_tensor(maps).detach().flatten(1).isnan().any(1).to(pred.device)
    return _nan_where(nan_rows, _binary_iou(pred, s))


@register_metric("miou", category="localisation", needs_mask=True)
def miou(maps: torch.Tensor, masks: torch.Tensor, *, threshold: float | str = "otsu") -> torch.Tensor:
    """Mean IoU over images (CheXlocalize's mIoU of one pathology): NaN-ignoring mean of ``segmentation_iou``.

    Saporta et al., Nat. Mach. Intell. 2022. Images with an empty segmentation or mask are left out
    of the mean (call ``segmentation_iou`` to count them); compute it once per pathology.

    Returns:
        float64 0-d tensor in [0, 1]; NaN when no image has a defined IoU.
    """
    return segmentation_iou(maps, masks, threshold=threshold).nanmean()


def _binary_iou(pred: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """IoU of 0/1 rows ``[B, N]``; NaN where either row is empty."""
    inter = (pred * s).sum(1)
    union = pred.sum(1) + s.sum(1) - inter
    return _nan_where((pred.sum(1) == 0) | (s.sum(1) == 0), inter / union.clamp_min(1))


def _flatten_pair(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 maps ``[B, N]`` and 0/1 float64 masks ``[B, N]`` on the maps' device."""
    m = torch.as_tensor(maps).detach()
    s = torch.as_tensor(masks).detach().to(m.device)
    if m.ndim < 1 or s.ndim < 1 or m.shape[0] != s.shape[0]:
        raise ValueError(f"maps {tuple(m.shape)} and masks {tuple(s.shape)} need the same batch size")
    m, s = m.flatten(1).to(torch.float64), (s.flatten(1) != 0).to(torch.float64)
    if m.shape != s.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in size per image")
    return m, s


def _check_unit(flat: torch.Tensor, metric: str) -> None:
    if bool(((flat < -_UNIT_TOLERANCE) | (flat > 1 + _UNIT_TOLERANCE)).any()):
        raise ValueError(
            f"{metric} expects maps in [0,1] (the explainer's unit_view), got values in "
            f"[{float(flat.nan_to_num(0).min()):.4g}, {float(flat.nan_to_num(0).max()):.4g}]"
        )


def _nan_where(condition: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.where(condition, torch.full_like(values, NAN), values)


@register_metric("lesion_focus", category="localisation", needs_mask=True)
def lesion_focus(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Relevance mass in the lesion relative to the same map smoothed at the lesion's own scale.

    ``relevance_mass(map) / relevance_mass(blur(map, sigma))``, with a Gaussian ``sigma`` equal to the
    lesion's equivalent radius ``sqrt(area / pi)`` (capped at 1/6 of the side). A reference-relative
    reading of relevance mass (Arras et al. 2022): the reference is the map itself without its
    lesion-scale structure, measured in the same call, so the value does not depend on the lesion's
    area fraction or the image resolution. 1 means no lesion-scale structure (a uniform map, noise,
    a map already spread over the lung); above 1 the heat is concentrated on the lesion; below 1 it
    is concentrated beside it.

    Args:
        maps: ``[B, 1, H, W]`` non-negative maps.
        masks: ``[B, 1, H, W]`` ground-truth masks.

    Returns:
        float64 ``[B]``; NaN where either relevance mass is undefined or the smoothed one is 0.
    """
    side = maps.shape[-1]
    area = masks.flatten(1).to(torch.float64).sum(1)
    sigma = (area / math.pi).sqrt().clamp(1.0, side / 6.0)
    smoothed = gaussian_blur(maps.detach().to(torch.float64), sigma)
    focused, reference = relevance_mass(maps, masks), relevance_mass(smoothed, masks)
    return _nan_where(reference == 0, focused / reference)
