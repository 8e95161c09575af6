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
    same = ctx.dataset("test").labels, ctx.probs("test")
    decor = ctx.dataset("test_decorrelated").labels, ctx.probs("test_decorrelated")
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
    p_with = ctx.probs(split)[carriers]
    p_without = predict_probs(ctx.model, without.as_float()[carriers], ctx.batch_size)
    drops = p_with - p_without
    boot = bootstrap_ci(drops, n_boot=n_boot, seed=seed)
    labels = data.labels[carriers]
    details = {"artifact": artifact, "split": split,
               "mean_drop_positives": float(drops[labels == 1].mean()) if (labels == 1).any() else None,
               "mean_drop_negatives": float(drops[labels == 0].mean()) if (labels == 0).any() else None,
               "mean_abs_change": float(drops.abs().mean()),
               "n_predictions_flipped": int(((p_with >= 0.5) != (p_without >= 0.5)).sum())}
    return Measurement(f"probability_drop_without[{artifact}]", boot.estimate, boot.low, boot.high, boot.n, details)
