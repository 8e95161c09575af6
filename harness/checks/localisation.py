"""Localisation of saliency maps against ground-truth lesion masks (seed 000, CheXlocalize).

Every check runs on the images with a non-empty lesion mask and bootstraps the per-image values;
the per-image values are kept in the details (``per_image``) for cross-architecture statistics.
"""

from __future__ import annotations

import torch

from harness.explain.context import ModelContext
from harness.checks.registry import Measurement, register_check
from harness.checks.samples import mean_samples, with_samples
from harness.metrics import (
    bootstrap_ci,
    diffgradcam,
    ehr_auc,
    energy_pointing_game,
    lesion_focus,
    localisation_auc,
    pointing_game,
    relevance_mass,
    relevance_rank,
    segmentation_iou,
    top_k_intersection,
)


def positives(ctx: ModelContext, split: str) -> torch.Tensor:
    """Indices of the images with a non-empty lesion mask."""
    return torch.nonzero(ctx.lesion_masks(split).flatten(1).any(1)).flatten()


def uniform_reference(masks: torch.Tensor) -> dict:
    """What a uniform map (or a random point) scores: the mean lesion area fraction of the images."""
    return {"name": "uniform map (lesion area fraction)", "value": float(masks.float().mean(dim=(1, 2, 3)).mean())}


def patient_ci(ctx: ModelContext, split: str, idx: torch.Tensor, values: torch.Tensor, n_boot: int, seed: int):
    """Bootstrap CI of the mean of per-image ``values`` (the images ``idx`` of ``split``), resampling patients.

    The result carries the per-image values with their image indices and patient ids, which
    ``Measurement.of`` records (``details["samples"]``) for the comparison with a baseline run.
    """
    boot = bootstrap_ci(values, groups=ctx.patients(split)[idx], n_boot=n_boot, seed=seed)
    return with_samples(boot, mean_samples(ctx, split, idx, values))


def _per_image(ctx: ModelContext, where: str, idx: torch.Tensor, metric: str, values: torch.Tensor, n_boot: int,
               seed: int, reference: dict | None = None, **details) -> Measurement:
    boot = patient_ci(ctx, where, idx, values, n_boot, seed)
    per_image = [None if v != v else round(float(v), 5) for v in values.tolist()]
    return Measurement.of(metric, boot, {"n_excluded": boot.n_excluded, **details, "per_image": per_image,
                                         "image_index": idx.tolist()}, reference)


@register_check("diffgradcam", category="localisation", reference="absolute; a uniform map scores 0", chance=0.0)
def check_diffgradcam(ctx: ModelContext, explainer: str, *, split: str = "test",
                      n_boot: int = 1000, seed: int = 0) -> Measurement:
    """DiffGradCAM (Sun et al., seed 000): mean [0,1] heat inside the lesion minus outside."""
    idx = positives(ctx, split)
    maps = ctx.unit_maps(explainer, split)[idx]
    masks = ctx.lesion_masks(split)[idx]
    return _per_image(ctx, split, idx, "diffgradcam", diffgradcam(maps, masks), n_boot, seed, split=split)


@register_check("ehr_auc", category="localisation", reference="absolute; a uniform map's score reported")
def check_ehr_auc(ctx: ModelContext, explainer: str, *, split: str = "test", n_thresholds: int = 20,
                  n_boot: int = 1000, seed: int = 0) -> Measurement:
    """EHR AUC (Zhang et al., seed 000): area under the effective-heat-ratio vs threshold curve."""
    idx = positives(ctx, split)
    maps = ctx.unit_maps(explainer, split)[idx]
    masks = ctx.lesion_masks(split)[idx]
    values = ehr_auc(maps, masks, n_thresholds=n_thresholds)
    return _per_image(ctx, split, idx, "ehr_auc", values, n_boot, seed,
                      reference=uniform_reference(masks), split=split, n_thresholds=n_thresholds)


@register_check("pointing_game", category="localisation", reference="absolute; chance (a random point) reported")
def check_pointing_game(ctx: ModelContext, explainer: str, *, split: str = "test", tolerance: int = 0,
                        n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Pointing game hit rate (Zhang et al. 2018): the map's first argmax lies in the lesion mask.

    ``tolerance`` (pixels) dilates the mask first, as the original protocol allows (15 px at 224x224);
    CheXlocalize's hit rate uses 0.
    """
    idx = positives(ctx, split)
    maps = ctx.unit_maps(explainer, split)[idx]
    masks = dilate_mask(ctx.lesion_masks(split)[idx], tolerance)
    return _per_image(ctx, split, idx, "pointing_game", pointing_game(maps, masks), n_boot, seed,
                      reference=uniform_reference(masks), split=split, tolerance=tolerance)


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation by a (2p+1)^2 square (p = 0 returns the mask unchanged)."""
    if pixels <= 0:
        return mask
    k = 2 * pixels + 1
    return torch.nn.functional.max_pool2d(mask.float(), k, stride=1, padding=pixels) > 0


@register_check("energy_pointing_game", category="localisation", reference="absolute; a uniform map's score reported")
def check_energy_pointing_game(ctx: ModelContext, explainer: str, *, split: str = "test", n_boot: int = 1000,
                               seed: int = 0) -> Measurement:
    """Energy-based pointing game (Wang et al. 2020, Score-CAM): share of the positive map's energy in the lesion."""
    maps, masks, idx = _positive_maps(ctx, explainer, split)
    return _per_image(ctx, split, idx, "energy_pointing_game", energy_pointing_game(maps, masks), n_boot, seed,
                      reference=uniform_reference(masks), split=split)


@register_check("iou", category="localisation", reference="absolute; the whole image's IoU reported")
def check_iou(ctx: ModelContext, explainer: str, *, split: str = "test", threshold: float | str = "otsu",
              n_boot: int = 1000, seed: int = 0) -> Measurement:
    """IoU of the thresholded map with the lesion (CheXlocalize: resize, min-max, Otsu or fixed); mean = mIoU."""
    maps, masks, idx = _positive_maps(ctx, explainer, split)
    values = segmentation_iou(maps, masks, threshold=threshold)
    return _per_image(ctx, split, idx, "iou", values, n_boot, seed,
                      reference=uniform_reference(masks), split=split, threshold=threshold)


@register_check("relevance_mass", category="localisation", reference="absolute; a uniform map's score reported")
def check_relevance_mass(ctx: ModelContext, explainer: str, *, split: str = "test", n_boot: int = 1000,
                         seed: int = 0) -> Measurement:
    """Relevance mass accuracy (Arras et al. 2022): share of the [0,1] map's relevance inside the lesion."""
    maps, masks, idx = _positive_maps(ctx, explainer, split)
    return _per_image(ctx, split, idx, "relevance_mass", relevance_mass(maps, masks), n_boot, seed,
                      reference=uniform_reference(masks), split=split)


@register_check("lesion_focus", category="localisation",
                reference="relative; the same map smoothed at the lesion's scale (1 = no lesion-scale structure)")
def check_lesion_focus(ctx: ModelContext, explainer: str, *, split: str = "test", n_boot: int = 1000,
                       seed: int = 0) -> Measurement:
    """Relevance mass in the lesion relative to the same map smoothed at the lesion's own scale.

    Arras et al. 2022's relevance mass, read against a reference measured on the same map: a map
    spread over the whole lung, noise and a uniform map score about 1, whatever the lesion's area.
    """
    maps, masks, idx = _positive_maps(ctx, explainer, split)
    return _per_image(ctx, split, idx, "lesion_focus", lesion_focus(maps, masks), n_boot, seed,
                      reference={"name": "the same map smoothed at lesion scale", "value": 1.0}, split=split)


@register_check("relevance_rank", category="localisation", reference="absolute; a uniform map's score reported")
def check_relevance_rank(ctx: ModelContext, explainer: str, *, split: str = "test", n_boot: int = 1000,
                         seed: int = 0) -> Measurement:
    """Relevance rank accuracy (Arras et al. 2022): share of the top-|mask| pixels that lie in the lesion."""
    maps, masks, idx = _positive_maps(ctx, explainer, split)
    return _per_image(ctx, split, idx, "relevance_rank", relevance_rank(maps, masks), n_boot, seed,
                      reference=uniform_reference(masks), split=split)


@register_check("localisation_auc", category="localisation", reference="absolute; chance is 0.5", chance=0.5)
def check_localisation_auc(ctx: ModelContext, explainer: str, *, split: str = "test", n_boot: int = 1000,
                           seed: int = 0) -> Measurement:
    """AUC of the map's pixels as scores for the lesion mask (0.5 = no preference; Quantus' AUC)."""
    maps, masks, idx = _positive_maps(ctx, explainer, split)
    return _per_image(ctx, split, idx, "localisation_auc", localisation_auc(maps, masks), n_boot, seed, split=split)


@register_check("top_k_intersection", category="localisation", reference="absolute; a uniform map's score reported")
def check_top_k_intersection(ctx: ModelContext, explainer: str, *, split: str = "test", k_fraction: float = 0.02,
                             n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Top-k intersection (Theiner et al. 2022): share of the top ``k_fraction`` of pixels inside the lesion."""
    maps, masks, idx = _positive_maps(ctx, explainer, split)
    k = max(1, round(k_fraction * maps[0].numel()))
    return _per_image(ctx, split, idx, "top_k_intersection", top_k_intersection(maps, masks, k=k), n_boot, seed,
                      reference=uniform_reference(masks), split=split, k=k)


def _positive_maps(ctx: ModelContext, explainer: str, split: str):
    """The explainer's [0,1] view (ReLU for CAMs, magnitude for gradients) and lesion masks of the positives.

    The view matters: a pneumothorax is a lucency, so the raw input gradient is negative on it; raw
    signed maps would score a perfectly localised gradient as anti-localised.
    """
    idx = positives(ctx, split)
    return ctx.unit_maps(explainer, split)[idx], ctx.lesion_masks(split)[idx], idx
