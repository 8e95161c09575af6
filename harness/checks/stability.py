"""Explanation stability: similar maps under small perturbations that keep the prediction.

After Alvarez-Melis & Jaakkola 2018 ("On the robustness of interpretability methods") and seed 001's
confessed gap: a map that changes a lot under imperceptible noise cannot be trusted. Intensity
perturbations (noise, blur, brightness/contrast, JPEG) should leave the map unchanged; geometric ones
(flips, rotations, shifts) should move it with the image (equivariance: the map of the transformed
image vs the transformed map). Only perturbations that keep the predicted class count; how many
changed it is reported, and a measurement over fewer than ``min_kept`` images that kept their
prediction (default 20) is an error that says how many were kept, never a pass.
"""

from __future__ import annotations

import torch

from harness.explain.context import ModelContext, explain_batched
from harness.checks.localisation import patient_ci, positives
from harness.checks.randomisation import similarity_fn
from harness.checks.registry import CheckInvalid, CheckSkipped, Measurement, register_check
from harness.data.perturbations import Perturbation, parse_perturbation
from harness.metrics.robustness import sensitivity_samples

MIN_KEPT = 20  # images that kept their prediction: fewer, and the similarity is an anecdote


@register_check("perturbation_stability", category="stability", reference="the unperturbed image's map")
def check_perturbation_stability(ctx: ModelContext, explainer: str, *, perturbation: str = "gaussian_noise(sigma=0.02)",
                                 similarity: str = "spearman", split: str = "test", n_images: int = 128,
                                 min_kept: int = MIN_KEPT, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Similarity of maps before vs after a small perturbation (prediction kept; geometric ones warp the map)."""
    return _stability(ctx, explainer, parse_perturbation(perturbation), similarity, split, n_images, min_kept,
                      n_boot, seed)


@register_check("equivariance", category="stability", reference="the original map, transformed")
def check_equivariance(ctx: ModelContext, explainer: str, *, transform: str = "hflip()",
                       similarity: str = "spearman", split: str = "test", n_images: int = 128,
                       min_kept: int = MIN_KEPT, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Equivariance: map of the flipped/rotated/shifted image vs the same transform of the map."""
    change = parse_perturbation(transform)
    if not change.geometric:
        raise ValueError(f"equivariance needs a geometric transform (hflip, vflip, rotate, shift), got {transform!r}")
    return _stability(ctx, explainer, change, similarity, split, n_images, min_kept, n_boot, seed)


def require_kept(n_kept: int, n_total: int, min_kept: int, what: str) -> None:
    """Raise CheckInvalid when fewer than ``min_kept`` images kept their prediction."""
    if n_kept < min_kept:
        raise CheckInvalid(f"only {n_kept} of {n_total} images kept their prediction under {what}; the check "
                           f"needs at least {min_kept} (min_kept) to mean anything")


def _stability(ctx: ModelContext, explainer: str, change: Perturbation, similarity: str, split: str,
               n_images: int, min_kept: int, n_boot: int, seed: int) -> Measurement:
    idx = positives(ctx, split)[:n_images]
    if idx.numel() == 0:
        raise CheckSkipped(f"no image with a lesion in split {split!r}")
    images = ctx.images(split)[idx]
    perturbed = change.apply(images, torch.Generator().manual_seed(seed))
    before = change.warp(ctx.maps(explainer, split)[idx])
    after = explain_batched(ctx.model, ctx.explainer(explainer), perturbed, ctx.batch_size, target=ctx.target_class)
    p_after = ctx.score_images(perturbed)  # multi-label: the checked finding
    kept = (ctx.scores(split)[idx] >= 0.5) == (p_after >= 0.5)
    require_kept(int(kept.sum()), idx.numel(), min_kept, repr(change))
    sims = similarity_fn(similarity)(before, after)[kept]
    boot = patient_ci(ctx, split, idx[kept], sims, n_boot, seed)
    details = {"perturbation": repr(change), "geometric": change.geometric, "similarity": similarity,
               "split": split, "n_prediction_changed": int((~kept).sum()), "n_images": int(idx.numel())}
    return Measurement.of(f"{similarity}_under_perturbation", boot, details)


@register_check("max_sensitivity", category="stability", reference="the unperturbed image's map")
def check_max_sensitivity(ctx: ModelContext, explainer: str, *, radius: float = 0.02, n_samples: int = 10,
                          split: str = "test", n_images: int = 32, keep_changed: bool = False,
                          min_kept: int = MIN_KEPT, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Max-sensitivity (Yeh et al. 2019): largest relative map change under uniform noise of ``radius`` (lower is better)."""
    return _sensitivity(ctx, explainer, "max", radius, n_samples, split, n_images, keep_changed, min_kept, n_boot, seed)


@register_check("avg_sensitivity", category="stability", reference="the unperturbed image's map")
def check_avg_sensitivity(ctx: ModelContext, explainer: str, *, radius: float = 0.02, n_samples: int = 10,
                          split: str = "test", n_images: int = 32, keep_changed: bool = False,
                          min_kept: int = MIN_KEPT, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Avg-sensitivity (Yeh et al. 2019): mean relative map change under uniform noise of ``radius`` (lower is better)."""
    return _sensitivity(ctx, explainer, "mean", radius, n_samples, split, n_images, keep_changed, min_kept, n_boot,
                        seed)


def _sensitivity(ctx: ModelContext, explainer: str, how: str, radius: float, n_samples: int, split: str,
                 n_images: int, keep_changed: bool, min_kept: int, n_boot: int, seed: int) -> Measurement:
    idx = positives(ctx, split)[:n_images]
    if idx.numel() == 0:
        raise CheckSkipped(f"no image with a lesion in split {split!r}")
    method = ctx.explainer(explainer)
    images = ctx.images(split)[idx].to(ctx.device)
    samples = sensitivity_samples(
        lambda x, t: method(ctx.model, x, t).detach(), images, ctx.target_tensor(idx.numel()).to(ctx.device),
        maps=ctx.maps(explainer, split)[idx], n_samples=n_samples, radius=radius, batch_size=ctx.batch_size,
        generator=torch.Generator(ctx.device).manual_seed(seed), predict_fn=_eval_logits(ctx.model))
    values = samples.reduce(how, on_prediction_change="keep" if keep_changed else "exclude").cpu()
    require_kept(int((~values.isnan()).sum()), idx.numel(), min_kept, f"uniform noise of radius {radius}")
    boot = patient_ci(ctx, split, idx, values, n_boot, seed)
    details = {"split": split, "radius": radius, "n_samples": n_samples, "keep_changed": keep_changed,
               "n_samples_prediction_changed": int(samples.n_changed.sum()), "n_excluded": boot.n_excluded}
    return Measurement.of(f"{how}_sensitivity", boot, details)


def _eval_logits(model):
    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.eval()(x)

    return predict
