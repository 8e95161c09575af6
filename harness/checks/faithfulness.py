"""Faithfulness and complexity checks: does removing the most-attributed pixels destroy the prediction?

Deletion and insertion (Petsiuk et al. 2018, RISE) are scored against a reference order on the
same images, so the value is self-normalising: ``deletion_gain`` = AUC(reference order) - AUC(map
order) is > 0 when the map names pixels the model needs. The default reference is *another image's
map* of the same explainer (each image takes the next one's): the same shapes and smoothness,
placed without this image. A random pixel order (``reference: random_pixels``) is the classic
baseline, but scattered deletions hurt a model more than a blob of the same size (ROAD, Rong et al.
2022: removal leaks information through its shape), so smooth maps such as Grad-CAM lose to it for
reasons unrelated to faithfulness (measured: Grad-CAM's gain over random pixels is negative on a
healthy ResNet-18 while its gain over another image's map is positive).
"""

from __future__ import annotations

import torch

from harness.explain.context import ModelContext
from harness.checks.localisation import patient_ci, positives
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.metrics.complexity import sparseness
from harness.metrics.faithfulness import curve_auc, deletion_curve, insertion_curve


REFERENCES = ("another_image", "random_pixels")


def _curves(ctx: ModelContext, explainer: str, split: str, n_images: int, n_steps: int, insert: bool, seed: int,
            reference: str = "another_image"):
    if reference not in REFERENCES:
        raise ValueError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
    idx = positives(ctx, split)[:n_images]
    if idx.numel() < 2:
        raise CheckSkipped(f"needs at least 2 images with a lesion in split {split!r}, got {idx.numel()}")
    images = ctx.images(split)[idx].to(ctx.device)
    targets = ctx.target_tensor(idx.numel()).to(ctx.device)
    maps = ctx.maps(explainer, split)[idx].to(ctx.device)
    curve = insertion_curve if insert else deletion_curve

    def random_order_auc() -> torch.Tensor:  # the same for every explainer: computed once per model
        order = torch.rand(maps.shape, generator=torch.Generator().manual_seed(seed)).to(ctx.device)
        with torch.no_grad():
            return curve_auc(curve(ctx.model, images, order, targets, n_steps=n_steps, batch_size=ctx.batch_size)).cpu()

    if reference == "random_pixels":
        chance = ctx.memo(("random_order", curve.__name__, split, n_images, n_steps, seed), random_order_auc)
    else:
        with torch.no_grad():
            chance = curve_auc(curve(ctx.model, images, maps.roll(1, dims=0), targets, n_steps=n_steps,
                                     batch_size=ctx.batch_size)).cpu()
    with torch.no_grad():
        ours = curve(ctx.model, images, maps, targets, n_steps=n_steps, batch_size=ctx.batch_size)
    return curve_auc(ours).cpu(), chance, ours.nanmean(0).cpu(), idx


@register_check("deletion", category="faithfulness", reference="another image's map (or a random pixel order)")
def check_deletion(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 64,
                   n_steps: int = 32, reference: str = "another_image", n_boot: int = 1000,
                   seed: int = 0) -> Measurement:
    """Deletion gain: AUC of P(class) as the reference order's pixels are blacked out minus as the map's top pixels are."""
    ours, chance, mean_curve, idx = _curves(ctx, explainer, split, n_images, n_steps, False, seed, reference)
    boot = patient_ci(ctx, split, idx, chance - ours, n_boot, seed)
    details = {"split": split, "deletion_auc": float(ours.nanmean()), "reference_auc": float(chance.nanmean()),
               "reference": reference, "mean_curve": [round(float(v), 4) for v in mean_curve]}
    return Measurement.of(f"deletion_gain_over_{reference}", boot, details,
                          {"name": f"{reference.replace('_', ' ')} order (AUC)", "value": float(chance.nanmean())})


@register_check("insertion", category="faithfulness", reference="another image's map (or a random pixel order)")
def check_insertion(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 64,
                    n_steps: int = 32, reference: str = "another_image", n_boot: int = 1000,
                    seed: int = 0) -> Measurement:
    """Insertion gain: AUC of P(class) as the map's top pixels are restored onto a blurred image minus the reference order."""
    ours, chance, mean_curve, idx = _curves(ctx, explainer, split, n_images, n_steps, True, seed, reference)
    boot = patient_ci(ctx, split, idx, ours - chance, n_boot, seed)
    details = {"split": split, "insertion_auc": float(ours.nanmean()), "reference_auc": float(chance.nanmean()),
               "reference": reference, "mean_curve": [round(float(v), 4) for v in mean_curve]}
    return Measurement.of(f"insertion_gain_over_{reference}", boot, details,
                          {"name": f"{reference.replace('_', ' ')} order (AUC)", "value": float(chance.nanmean())})


@register_check("sparseness", category="complexity")
def check_sparseness(ctx: ModelContext, explainer: str, *, split: str = "test", n_boot: int = 1000,
                     seed: int = 0) -> Measurement:
    """Sparseness (Gini index of |map|, Chalasani et al. 2020): 0 = uniform, towards 1 = a few pixels."""
    idx = positives(ctx, split)
    values = sparseness(ctx.maps(explainer, split)[idx])
    boot = patient_ci(ctx, split, idx, values, n_boot, seed)
    return Measurement.of("sparseness", boot, {"split": split, "n_excluded": boot.n_excluded})
