"""Faithfulness and complexity checks: does removing the most-attributed pixels destroy the prediction?

Deletion and insertion (Petsiuk et al. 2018, RISE) are scored against a random pixel order on the
same images, so the value is self-normalising: ``deletion_gain`` = AUC(random order) - AUC(map
order) is > 0 when the map names pixels the model needs. ROAD (Rong et al. 2022) warns that removal
leaks class information through the removed shape; read these beside the localisation checks.
"""

from __future__ import annotations

import torch

from harness.checks.context import ModelContext
from harness.checks.localisation import positives
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.metrics import bootstrap_ci
from harness.metrics.complexity import sparseness
from harness.metrics.faithfulness import curve_auc, deletion_curve, insertion_curve


def _curves(ctx: ModelContext, explainer: str, split: str, n_images: int, n_steps: int, insert: bool, seed: int):
    idx = positives(ctx, split)[:n_images]
    if idx.numel() == 0:
        raise CheckSkipped(f"no image with a lesion in split {split!r}")
    images = ctx.images(split)[idx].to(ctx.device)
    targets = ctx.target_tensor(idx.numel()).to(ctx.device)
    maps = ctx.maps(explainer, split)[idx].to(ctx.device)
    curve = insertion_curve if insert else deletion_curve

    def random_order_auc() -> torch.Tensor:  # the same for every explainer: computed once per model
        order = torch.rand(maps.shape, generator=torch.Generator().manual_seed(seed)).to(ctx.device)
        with torch.no_grad():
            return curve_auc(curve(ctx.model, images, order, targets, n_steps=n_steps, batch_size=ctx.batch_size)).cpu()

    chance = ctx.memo(("random_order", curve.__name__, split, n_images, n_steps, seed), random_order_auc)
    with torch.no_grad():
        ours = curve(ctx.model, images, maps, targets, n_steps=n_steps, batch_size=ctx.batch_size)
    return curve_auc(ours).cpu(), chance, ours.nanmean(0).cpu()


@register_check("deletion", category="faithfulness")
def check_deletion(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 64,
                   n_steps: int = 32, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Deletion gain: AUC of P(class) as random-order pixels are blacked out minus as the map's top pixels are."""
    ours, chance, mean_curve = _curves(ctx, explainer, split, n_images, n_steps, False, seed)
    boot = bootstrap_ci(chance - ours, n_boot=n_boot, seed=seed)
    details = {"split": split, "deletion_auc": float(ours.nanmean()), "random_order_auc": float(chance.nanmean()),
               "mean_curve": [round(float(v), 4) for v in mean_curve]}
    return Measurement("deletion_gain_over_random", boot.estimate, boot.low, boot.high, boot.n, details)


@register_check("insertion", category="faithfulness")
def check_insertion(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 64,
                    n_steps: int = 32, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Insertion gain: AUC of P(class) as the map's top pixels are restored onto a blurred image minus random order."""
    ours, chance, mean_curve = _curves(ctx, explainer, split, n_images, n_steps, True, seed)
    boot = bootstrap_ci(ours - chance, n_boot=n_boot, seed=seed)
    details = {"split": split, "insertion_auc": float(ours.nanmean()), "random_order_auc": float(chance.nanmean()),
               "mean_curve": [round(float(v), 4) for v in mean_curve]}
    return Measurement("insertion_gain_over_random", boot.estimate, boot.low, boot.high, boot.n, details)


@register_check("sparseness", category="complexity")
def check_sparseness(ctx: ModelContext, explainer: str, *, split: str = "test", n_boot: int = 1000,
                     seed: int = 0) -> Measurement:
    """Sparseness (Gini index of |map|, Chalasani et al. 2020): 0 = uniform, towards 1 = a few pixels."""
    idx = positives(ctx, split)
    values = sparseness(ctx.maps(explainer, split)[idx])
    boot = bootstrap_ci(values, n_boot=n_boot, seed=seed)
    return Measurement("sparseness", boot.estimate, boot.low, boot.high, boot.n,
                       {"split": split, "n_excluded": boot.n_excluded})
