"""Shortcut detection: does the model look at a chest drain, a marker or the border, not the lesion?

Pneumothorax models key on chest drains (Oakden-Rayner et al. 2020, "Hidden stratification");
laterality markers and hospital tokens are learned (Zech et al. 2018). Two views of one question:
where the attribution goes (inside the artifact masks), and what happens to AUROC when the artifact
no longer tracks the label (a decorrelated test split). Accuracy on the usual test split hides both.
"""

from __future__ import annotations

import torch

from harness.checks.context import ModelContext, predict_probs
from harness.checks.localisation import dilate_mask
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.metrics import auroc, bootstrap_ci, region_share
from harness.metrics.clustering import spectral_relevance_clusters


@register_check("artifact_attribution", category="shortcut")
def check_artifact_attribution(ctx: ModelContext, explainer: str, *, artifact: str = "chest_drain",
                               split: str = "test", dilate: int = 1, n_boot: int = 1000,
                               seed: int = 0) -> Measurement:
    """Share of positive attribution inside an artifact's mask, on the images that carry it."""
    data = ctx.dataset(split)
    if artifact not in data.artifact_masks:
        known = ", ".join(sorted(data.artifact_masks)) or "none"
        raise CheckSkipped(f"dataset {data.name} has no artifact {artifact!r} (it has: {known})")
    idx = torch.nonzero(data.has_artifact(artifact)).flatten()
    if idx.numel() == 0:
        raise CheckSkipped(f"no image of {data.name} carries the artifact {artifact!r}")
    region = dilate_mask(data.artifact_masks[artifact][idx], dilate)
    maps = ctx.unit_maps(explainer, split)[idx]
    shares = region_share(maps, region)
    area = region.float().mean(dim=(1, 2, 3))
    boot = bootstrap_ci(shares, n_boot=n_boot, seed=seed)
    details = {"artifact": artifact, "split": split, "dilate": dilate,
               "mean_area_fraction": float(area.mean()),
               "share_over_area": float((shares / area).nanmean())}
    return Measurement(f"attribution_share[{artifact}]", boot.estimate, boot.low, boot.high, boot.n, details)


@register_check("decorrelated_auroc_drop", category="shortcut", needs_explainer=False)
def check_decorrelated_auroc_drop(ctx: ModelContext, explainer: str | None = None, *,
                                  n_boot: int = 1000, seed: int = 0) -> Measurement:
    """AUROC on the usual test split minus AUROC where the artifacts are independent of the label."""
    same = ctx.labels("test"), ctx.scores("test")
    decor = ctx.labels("test_decorrelated"), ctx.scores("test_decorrelated")
    drop = float(auroc(same[1], same[0]) - auroc(decor[1], decor[0]))
    g = torch.Generator().manual_seed(seed)
    reps = []
    for _ in range(n_boot):
        a = _resampled_auroc(*same, g)
        b = _resampled_auroc(*decor, g)
        reps.append(a - b)
    reps_t = torch.tensor(reps)
    reps_t = reps_t[torch.isfinite(reps_t)]
    low, high = torch.quantile(reps_t, torch.tensor([0.025, 0.975], dtype=reps_t.dtype)).tolist()
    details = {"auroc_test": float(auroc(same[1], same[0])),
               "auroc_decorrelated": float(auroc(decor[1], decor[0])),
               "n_decorrelated": int(decor[0].numel())}
    return Measurement("auroc_drop_decorrelated", drop, low, high, int(same[0].numel()), details)


def _resampled_auroc(labels: torch.Tensor, probs: torch.Tensor, g: torch.Generator) -> float:
    pick = torch.randint(0, labels.numel(), (labels.numel(),), generator=g)
    return float(auroc(probs[pick], labels[pick]))


@register_check("artifact_removal", category="shortcut", needs_explainer=False)
def check_artifact_removal(ctx: ModelContext, explainer: str | None = None, *, artifact: str = "chest_drain",
                           split: str = "test", n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Counterfactual: drop in P(positive) when the artifact is removed from the images carrying it.

    The same patients, lesions and exposures are rendered again without that one artifact, so any
    change of the prediction is caused by the artifact alone. A model that reads the lesion does
    not care; a model that reads the chest drain does.
    """
    data = ctx.dataset(split)
    shortcuts = data.config.get("shortcuts")
    if shortcuts is None or artifact not in data.artifact_masks:
        raise CheckSkipped(f"dataset {data.name} cannot render counterfactuals without {artifact!r}")
    carriers = torch.nonzero(data.has_artifact(artifact)).flatten()
    if carriers.numel() == 0:
        raise CheckSkipped(f"no image of {data.name} carries the artifact {artifact!r}")
    without = ctx.dataset(split, shortcuts={k: v for k, v in shortcuts.items() if k != artifact})
    p_with = ctx.scores(split)[carriers]
    p_without = predict_probs(ctx.model, without.as_float()[carriers], ctx.batch_size)
    drops = p_with - p_without
    boot = bootstrap_ci(drops, n_boot=n_boot, seed=seed)
    labels = ctx.labels(split)[carriers]
    details = {"artifact": artifact, "split": split,
               "mean_drop_positives": float(drops[labels == 1].mean()) if (labels == 1).any() else None,
               "mean_drop_negatives": float(drops[labels == 0].mean()) if (labels == 0).any() else None,
               "mean_abs_change": float(drops.abs().mean()),
               "n_predictions_flipped": int(((p_with >= 0.5) != (p_without >= 0.5)).sum())}
    return Measurement(f"probability_drop_without[{artifact}]", boot.estimate, boot.low, boot.high, boot.n, details)


@register_check("artifact_addition", category="shortcut", needs_explainer=False)
def check_artifact_addition(ctx: ModelContext, explainer: str | None = None, *, artifact: str = "chest_drain",
                            split: str = "test", n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Counterfactual: rise in P(positive) of negatives when the artifact is added to them.

    The negatives that did not carry the artifact are rendered again with it (same patients and
    exposures); a model that reads the lesion does not care.
    """
    data = ctx.dataset(split)
    shortcuts = data.config.get("shortcuts")
    if shortcuts is None:
        raise CheckSkipped(f"dataset {data.name} cannot render counterfactuals with {artifact!r}")
    carries = data.has_artifact(artifact) if artifact in data.artifact_masks else torch.zeros(len(data), dtype=torch.bool)
    targets = torch.nonzero((ctx.labels(split) == 0) & ~carries).flatten()
    if targets.numel() == 0:
        raise CheckSkipped(f"every negative of {data.name} already carries {artifact!r}")
    added = ctx.dataset(split, shortcuts={**shortcuts, artifact: {"p_pos": 1.0, "p_neg": 1.0}})
    p_before = ctx.scores(split)[targets]
    p_after = predict_probs(ctx.model, added.as_float()[targets], ctx.batch_size)
    rises = p_after - p_before
    boot = bootstrap_ci(rises, n_boot=n_boot, seed=seed)
    details = {"artifact": artifact, "split": split, "n_negatives": int(targets.numel()),
               "n_predictions_flipped": int(((p_before >= 0.5) != (p_after >= 0.5)).sum())}
    return Measurement(f"probability_rise_with[{artifact}]", boot.estimate, boot.low, boot.high, boot.n, details)


@register_check("outside_anatomy_attribution", category="shortcut")
def check_outside_anatomy_attribution(ctx: ModelContext, explainer: str, *, region: str = "outside_lungs",
                                      border: float = 0.08, split: str = "test", n_boot: int = 1000,
                                      seed: int = 0) -> Measurement:
    """Attribution density outside the lungs or in the image border relative to a uniform map (extrathoracic bias).

    Seed 001 flags heat in corners and borders. The value is (share of the [0,1] map in the region) /
    (region's area fraction), averaged over positive predictions: 1 = as dense as a uniform map,
    > 1 = the heat concentrates there. ``region``: ``outside_lungs`` (everything but the lung
    fields) or ``border`` (a frame of ``border`` x the image side).
    """
    data = ctx.dataset(split)
    idx = torch.nonzero(ctx.scores(split) >= 0.5).flatten()
    if idx.numel() == 0:
        raise CheckSkipped(f"the model predicts no positive in split {split!r}")
    mask = _attention_region(data, region, border)[idx]
    shares = region_share(ctx.unit_maps(explainer, split)[idx], mask)
    area = mask.float().mean(dim=(1, 2, 3))
    boot = bootstrap_ci(shares / area, n_boot=n_boot, seed=seed)
    details = {"region": region, "split": split, "mean_area_fraction": float(area.mean()),
               "mean_share": float(shares.nanmean())}
    return Measurement(f"attribution_density[{region}]", boot.estimate, boot.low, boot.high, boot.n, details)


def _attention_region(data, region: str, border: float) -> torch.Tensor:
    if data.lung_masks is None and region == "outside_lungs":
        raise CheckSkipped(f"dataset {data.name} has no lung masks: use region: border")
    if region == "outside_lungs":
        return ~data.lung_masks
    if region == "border":
        frame = torch.ones((len(data), 1, *data.images.shape[-2:]), dtype=torch.bool)
        h, w = frame.shape[-2:]
        bh, bw = max(1, round(border * h)), max(1, round(border * w))
        frame[..., bh:h - bh, bw:w - bw] = False
        return frame
    raise ValueError(f"region must be 'outside_lungs' or 'border', got {region!r}")


@register_check("spray_clusters", category="shortcut")
def check_spray_clusters(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 256,
                         max_clusters: int = 6, outside_density: float = 1.0, n_boot: int = 1000,
                         seed: int = 0) -> Measurement:
    """SpRAy (Lapuschkin et al. 2019): share of positive predictions in clusters whose heat sits outside the lungs.

    The maps of positive predictions are clustered spectrally; a cluster is flagged when its heat
    outside the lungs is denser than a uniform map's by ``outside_density`` (share / area). Prototype
    members of every cluster are drawn in the report for a human to inspect.
    """
    data = ctx.dataset(split)
    idx = torch.nonzero(ctx.scores(split) >= 0.5).flatten()[:n_images]
    if idx.numel() < 3:
        raise CheckSkipped(f"SpRAy needs at least 3 positive predictions in split {split!r}, got {idx.numel()}")
    if data.lung_masks is None:
        raise CheckSkipped(f"dataset {data.name} has no lung masks to tell anatomy from elsewhere")
    maps = ctx.unit_maps(explainer, split)[idx]
    clusters = spectral_relevance_clusters(maps, max_clusters=max_clusters, seed=seed)
    outside_mask = ~data.lung_masks[idx]
    density = region_share(maps, outside_mask) / outside_mask.float().mean(dim=(1, 2, 3))
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
    boot = bootstrap_ci(flagged.double(), n_boot=n_boot, seed=seed)
    details = {"split": split, "n_clusters": clusters.n_clusters, "eigenvalues": clusters.eigenvalues,
               "clusters": summary, "outside_density": outside_density}
    return Measurement("share_in_offanatomy_clusters", boot.estimate, boot.low, boot.high, boot.n, details)
