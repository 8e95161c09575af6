"""Shortcuts nobody annotated: heat outside the anatomy, SpRAy clusters, and occluding what the maps point at.

A team's real shortcut is rarely one the harness was told about (a burned-in token, a site's
stamp). These checks need no artifact mask, only the anatomy (lung masks): seed 001's
"extrathoracic bias" (heat density outside the lungs or in the border, relative to a uniform map),
SpRAy (Lapuschkin et al. 2019: cluster the positive predictions' maps, flag clusters whose heat sits
off the anatomy) and an occlusion test: blur away the pixels the map ranks highest outside the
anatomy and measure the drop of P(positive), against occluding a same-shaped region chosen without
the map. A model that reads the lesion loses nothing; one that reads a token outside the lungs does.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from harness.checks.localisation import patient_ci
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.data.texture import gaussian_blur
from harness.explain.context import ModelContext
from harness.metrics import region_share
from harness.metrics.clustering import spectral_relevance_clusters
from harness.metrics.stats import bootstrap_statistic

ANATOMY_MARGIN = 0.05  # the lungs dilated by this fraction of the side count as anatomy (lesions touch the edge)


PER_IMAGE_STATISTICS = ("mass", "top")
STATISTICS = (*PER_IMAGE_STATISTICS, "class_mean_top")


@register_check("outside_anatomy_attribution", category="shortcut", reference="uniform map (1.0)")
def check_outside_anatomy_attribution(ctx: ModelContext, explainer: str, *, region: str = "outside_lungs",
                                      border: float = 0.08, statistic: str = "top", top_fraction: float = 0.02,
                                      split: str = "test", n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Attribution density outside the lungs or in the image border relative to a uniform map (extrathoracic bias).

    Seed 001 flags heat in corners and borders. Per positive prediction, ``statistic: mass`` is
    (share of the [0,1] map's mass in the region) / (the region's area fraction), ``top`` is (share
    of the map's ``top_fraction`` highest pixels in the region) / (area fraction): 1 = what a uniform
    map scores, > 1 = the heat concentrates there. ``top`` reads where the map points, so a small
    hot spot (a burned-in token) counts as much as a large one and the faint spill of a smooth map
    does not; ``mass`` is the classic reading. ``class_mean_top`` reads the positive predictions'
    class-averaged map instead (seed 001's class-averaged maps; SpRAy's premise, Lapuschkin et al.
    2019): the share of its top pixels in the region over the region's mean area. A noisy map (the
    gradient) points off the lungs a little on every image, healthy or not, and averaging cancels
    that, while a shortcut at a fixed place (a border frame, a corner marker) adds up; a shortcut
    whose place varies from image to image averages out (``offanatomy_occlusion`` is for that one).
    Its CI resamples patients and averages again. Measured on the meta population it catches no more
    shortcuts than ``top``: the gradient maps of most shortcut models do not point at the artifact
    they use (benchmarks/results/meta_cpu_class_mean_experiment.json), so the suite keeps ``top``.
    ``region``: ``outside_lungs`` (everything but the lung fields, dilated by 5% of the side: lesions
    touch their edge) or ``border`` (a frame of ``border`` x the image side).
    """
    data = ctx.dataset(split)
    idx = torch.nonzero(ctx.scores(split) >= 0.5).flatten()
    if idx.numel() == 0:
        raise CheckSkipped(f"the model predicts no positive in split {split!r}")
    mask = _attention_region(data, region, border)[idx]
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {statistic!r}")
    maps = ctx.unit_maps(explainer, split)[idx]
    if statistic == "class_mean_top":
        boot = bootstrap_statistic(partial(mean_map_density, top_fraction=top_fraction), maps, mask,
                                   groups=ctx.patients(split)[idx], n_boot=n_boot, seed=seed)
    else:
        boot = patient_ci(ctx, split, idx, region_density(maps, mask, statistic, top_fraction), n_boot, seed)
    details = {"region": region, "statistic": statistic, "split": split,
               "mean_area_fraction": float(mask.float().mean())}
    return Measurement.of(f"attribution_density[{region},{statistic}]", boot, details,
                          {"name": "uniform map", "value": 1.0})


def region_density(maps01: torch.Tensor, region: torch.Tensor, statistic: str = "top",
                   top_fraction: float = 0.02) -> torch.Tensor:
    """Per map: the region's share of the map (``mass``) or of its top pixels (``top``) over its area fraction."""
    if statistic not in PER_IMAGE_STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(PER_IMAGE_STATISTICS)}, got {statistic!r}")
    area = region.float().mean(dim=(1, 2, 3))
    if statistic == "mass":
        return region_share(maps01, region) / area
    top = top_pixels(maps01, torch.ones_like(region), top_fraction)
    return (top & region).flatten(1).sum(1) / top.flatten(1).sum(1).clamp_min(1) / area


def mean_map_density(maps01: torch.Tensor, region: torch.Tensor, top_fraction: float = 0.02) -> torch.Tensor:
    """Share of the class-averaged map's ``top_fraction`` highest pixels in ``region``, over the region's area.

    ``region`` may differ per image (the lungs move): a pixel counts by how often it lies in the
    region. Ties at the cut share the remaining places equally, so a constant map scores exactly 1
    (what a uniform map scores) instead of whatever pixels a sort happens to list first.
    """
    mean_map = maps01.double().mean(0).flatten()
    in_region = region.double().mean(0).flatten()
    k = max(1, round(top_fraction * mean_map.numel()))
    cut = mean_map.topk(k).values[-1]
    above, tied = mean_map > cut, mean_map == cut
    weight = above.double() + tied.double() * (k - int(above.sum())) / tied.sum()
    return (weight * in_region).sum() / k / in_region.mean()


def _attention_region(data, region: str, border: float) -> torch.Tensor:
    if data.lung_masks is None and region == "outside_lungs":
        raise CheckSkipped(f"dataset {data.name} has no lung masks: use region: border")
    if region == "outside_lungs":
        return ~dilated(data.lung_masks, ANATOMY_MARGIN)
    if region == "border":
        frame = torch.ones((len(data), 1, *data.images.shape[-2:]), dtype=torch.bool)
        h, w = frame.shape[-2:]
        bh, bw = max(1, round(border * h)), max(1, round(border * w))
        frame[..., bh:h - bh, bw:w - bw] = False
        return frame
    raise ValueError(f"region must be 'outside_lungs' or 'border', got {region!r}")


@register_check("spray_clusters", category="shortcut", reference="uniform map (cluster density above 1.0)")
def check_spray_clusters(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 256,
                         max_clusters: int = 6, outside_density: float = 1.0, statistic: str = "top",
                         top_fraction: float = 0.02, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """SpRAy (Lapuschkin et al. 2019): share of positive predictions in clusters whose heat sits outside the lungs.

    The maps of positive predictions are clustered spectrally; a cluster is flagged when its
    members' density outside the (dilated) lungs, relative to a uniform map (``statistic`` as in
    ``outside_anatomy_attribution``), averages above ``outside_density``. Prototype members of
    every cluster are drawn in the report for a human to inspect.
    """
    data = ctx.dataset(split)
    idx = torch.nonzero(ctx.scores(split) >= 0.5).flatten()[:n_images]
    if idx.numel() < 3:
        raise CheckSkipped(f"SpRAy needs at least 3 positive predictions in split {split!r}, got {idx.numel()}")
    if data.lung_masks is None:
        raise CheckSkipped(f"dataset {data.name} has no lung masks to tell anatomy from elsewhere")
    maps = ctx.unit_maps(explainer, split)[idx]
    clusters = spectral_relevance_clusters(maps, max_clusters=max_clusters, seed=seed)
    outside_mask = ~dilated(data.lung_masks[idx], ANATOMY_MARGIN)
    density = region_density(maps, outside_mask, statistic, top_fraction)
    summary, flagged = [], torch.zeros(idx.numel(), dtype=torch.bool)
    for c, protos in enumerate(clusters.prototypes):
        members = clusters.labels == c
        value = float(density[members].nanmean())
        artifacts = {name: float(region_share(maps[members], m[idx][members]).nanmean())
                     for name, m in data.artifact_masks.items() if bool(m[idx][members].any())}
        summary.append({"cluster": c, "size": int(members.sum()), "outside_lungs_density": value,
                        "artifact_shares": artifacts, "flagged": value > outside_density,
                        "prototypes": idx[protos].tolist()})
        flagged |= members & (value > outside_density)
    boot = patient_ci(ctx, split, idx, flagged.double(), n_boot, seed)
    details = {"split": split, "n_clusters": clusters.n_clusters, "eigenvalues": clusters.eigenvalues,
               "clusters": summary, "outside_density": outside_density, "statistic": statistic}
    return Measurement.of("share_in_offanatomy_clusters", boot, details)


@register_check("offanatomy_occlusion", category="shortcut",
                reference="occluding a same-shaped region chosen without the map")
def check_offanatomy_occlusion(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 192,
                               top_fraction: float = 0.02, n_controls: int = 8, anatomy_margin: float = 0.10,
                               n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Drop of the log-odds of P(positive) when the map's top pixels outside the anatomy are blurred away, minus the drop for a control region.

    For each positive prediction, the ``top_fraction`` of the image's pixels that the map ranks
    highest outside the (slightly dilated) lungs are replaced by a heavily blurred copy of the
    image; the control drop is the mean over ``n_controls`` other images' selections, each restricted
    to this image's outside (the same kind of shape, placed without this map; with one control
    region a healthy ViT's CI was a third wider). The value is the mean difference of the
    two drops in log-odds (a probability saturates near 1 and hides what the model uses): about 0 when
    nothing outside the anatomy matters to the model, large when the map points at a shortcut
    there, whatever it is and whether or not anybody annotated it. It cannot catch a shortcut spread
    over more pixels than it occludes: a frame round the whole image (about 15% of it at 64 px) mostly
    survives blurring its top 2% (``context_swap`` catches that one). The anatomy is the lungs dilated by
    ``anatomy_margin`` of the side (10%): with 5%, a healthy model's gradient spilled from a lesion at
    the lung edge into the "outside" and its occlusion cost as much as a weak marker shortcut's (calib
    split, 9 healthy seeds per family); at 15% the marker and token are inside the "anatomy" too.
    """
    data = ctx.dataset(split)
    if data.lung_masks is None:
        raise CheckSkipped(f"dataset {data.name} has no lung masks to tell anatomy from elsewhere")
    idx = torch.nonzero(ctx.scores(split) >= 0.5).flatten()[:n_images]
    if idx.numel() < 2:
        raise CheckSkipped(f"needs at least 2 positive predictions in split {split!r}, got {idx.numel()}")
    images, p_before = ctx.images(split)[idx], ctx.scores(split)[idx]
    outside = ~dilated(data.lung_masks[idx], anatomy_margin)
    chosen = top_pixels(ctx.unit_maps(explainer, split)[idx], outside, top_fraction)
    p_map = _score_without(ctx, images, chosen)
    drop_map = log_odds(p_before) - log_odds(p_map)
    n_controls = max(1, min(n_controls, idx.numel() - 1))
    drop_control = torch.stack([  # other images' selections: the same kind of shape, not this map's
        log_odds(p_before) - log_odds(_score_without(ctx, images, chosen.roll(k, dims=0) & outside))
        for k in range(1, n_controls + 1)]).mean(0)
    boot = patient_ci(ctx, split, idx, drop_map - drop_control, n_boot, seed)
    details = {"split": split, "top_fraction": top_fraction, "n_controls": n_controls, "anatomy_margin": anatomy_margin,
               "mean_logodds_drop_map": float(drop_map.mean()),
               "mean_logodds_drop_control": float(drop_control.mean()),
               "mean_probability_drop_map": float((p_before - p_map).mean()),
               "n_predictions_flipped": int((p_map < 0.5).sum())}
    return Measurement.of("logodds_drop_offanatomy_vs_control", boot, details,
                          {"name": "log-odds drop for the control region", "value": float(drop_control.mean())})


def log_odds(p: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """log(p / (1 - p)) with p clamped to [eps, 1 - eps] (at most about +-9.2)."""
    p = p.double().clamp(eps, 1 - eps)
    return torch.log(p / (1 - p))


def top_pixels(maps01: torch.Tensor, allowed: torch.Tensor, fraction: float) -> torch.Tensor:
    """bool mask of the ``fraction`` of all pixels with the highest map values among ``allowed`` pixels."""
    flat = torch.where(allowed, maps01, torch.full_like(maps01, -1.0)).flatten(1)
    k = max(1, round(fraction * flat.shape[1]))
    top = flat.topk(k, dim=1).indices
    mask = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, top, True)
    return mask.view_as(maps01) & allowed


def dilated(mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """bool ``mask`` grown by ``fraction`` of the image side (a square max filter): the anatomy with a margin."""
    pixels = max(1, round(fraction * mask.shape[-1]))
    return F.max_pool2d(mask.float(), 2 * pixels + 1, stride=1, padding=pixels) > 0


def _score_without(ctx: ModelContext, images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """P(positive) after replacing ``region`` by a blurred copy of the image (sigma: 1/16 of the side)."""
    sigma = torch.full((images.shape[0],), images.shape[-1] / 16.0)
    blurred = gaussian_blur(images, sigma)
    occluded = torch.where(region, blurred, images)
    return ctx.score_images(occluded)
