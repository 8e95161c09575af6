"""Localisation of saliency maps against ground-truth lesion masks (seed 000, CheXlocalize)."""

from __future__ import annotations

import torch

from harness.checks.context import ModelContext
from harness.checks.registry import Measurement, register_check
from harness.metrics import bootstrap_ci, diffgradcam, ehr_auc, pointing_game


def positives(ctx: ModelContext, split: str) -> torch.Tensor:
    """Indices of the images with a non-empty lesion mask."""
    data = ctx.dataset(split)
    return torch.nonzero(data.lesion_masks.flatten(1).any(1)).flatten()


def _per_image(metric: str, values: torch.Tensor, n_boot: int, seed: int, **details) -> Measurement:
    boot = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    return Measurement(metric, boot.estimate, boot.low, boot.high, boot.n,
                       {"n_excluded": boot.n_excluded, **details})


@register_check("diffgradcam", category="localisation")
def check_diffgradcam(ctx: ModelContext, explainer: str, *, split: str = "test",
                      n_boot: int = 1000, seed: int = 0) -> Measurement:
    """DiffGradCAM (Sun et al., seed 000): mean [0,1] heat inside the lesion minus outside."""
    idx = positives(ctx, split)
    maps = ctx.unit_maps(explainer, split)[idx]
    masks = ctx.dataset(split).lesion_masks[idx]
    return _per_image("diffgradcam", diffgradcam(maps, masks), n_boot, seed, split=split)


@register_check("ehr_auc", category="localisation")
def check_ehr_auc(ctx: ModelContext, explainer: str, *, split: str = "test", n_thresholds: int = 20,
                  n_boot: int = 1000, seed: int = 0) -> Measurement:
    """EHR AUC (Zhang et al., seed 000): area under the effective-heat-ratio vs threshold curve."""
    idx = positives(ctx, split)
    maps = ctx.unit_maps(explainer, split)[idx]
    masks = ctx.dataset(split).lesion_masks[idx]
    values = ehr_auc(maps, masks, n_thresholds=n_thresholds)
    return _per_image("ehr_auc", values, n_boot, seed, split=split, n_thresholds=n_thresholds)


@register_check("pointing_game", category="localisation")
def check_pointing_game(ctx: ModelContext, explainer: str, *, split: str = "test", tolerance: int = 0,
                        n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Pointing game hit rate (Zhang et al. 2018): the map's first argmax lies in the lesion mask.

    ``tolerance`` (pixels) dilates the mask first, as the original protocol allows (15 px at 224x224);
    CheXlocalize's hit rate uses 0.
    """
    idx = positives(ctx, split)
    maps = ctx.unit_maps(explainer, split)[idx]
    masks = dilate_mask(ctx.dataset(split).lesion_masks[idx], tolerance)
    return _per_image("pointing_game", pointing_game(maps, masks), n_boot, seed, split=split, tolerance=tolerance)


def dilate_mask(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary dilation by a (2p+1)^2 square (p = 0 returns the mask unchanged)."""
    if pixels <= 0:
        return mask
    k = 2 * pixels + 1
    return torch.nn.functional.max_pool2d(mask.float(), k, stride=1, padding=pixels) > 0
