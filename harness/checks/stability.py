"""Explanation stability under small input perturbations that keep the prediction.

After Alvarez-Melis & Jaakkola 2018 ("On the robustness of interpretability methods") and seed 001's
confessed gap: a map that changes a lot under imperceptible noise cannot be trusted. Only
perturbations that keep the predicted class count; how many changed it is reported.
"""

from __future__ import annotations

import torch

from harness.checks.context import ModelContext, explain_batched, predict_probs
from harness.checks.localisation import positives
from harness.checks.registry import Measurement, register_check
from harness.data.perturbations import parse_perturbation
from harness.metrics import bootstrap_ci, spearman


@register_check("perturbation_stability", category="stability")
def check_perturbation_stability(ctx: ModelContext, explainer: str, *, perturbation: str = "gaussian_noise(sigma=0.02)",
                                 split: str = "test", n_images: int = 128, n_boot: int = 1000,
                                 seed: int = 0) -> Measurement:
    """Spearman similarity of maps before vs after a small perturbation (prediction kept)."""
    change = parse_perturbation(perturbation)
    idx = positives(ctx, split)[:n_images]
    images = ctx.images(split)[idx]
    generator = torch.Generator().manual_seed(seed)
    perturbed = change.apply(images, generator)
    before = ctx.maps(explainer, split)[idx]
    after = explain_batched(ctx.model, ctx.explainer(explainer), perturbed, ctx.batch_size)
    kept = (ctx.probs(split)[idx] >= 0.5) == (predict_probs(ctx.model, perturbed, ctx.batch_size) >= 0.5)
    sims = spearman(before, after)[kept]
    boot = bootstrap_ci(sims, n_boot=n_boot, seed=seed)
    details = {"perturbation": repr(change), "split": split, "n_prediction_changed": int((~kept).sum()),
               "n_images": int(idx.numel())}
    return Measurement("spearman_under_perturbation", boot.estimate, boot.low, boot.high, boot.n, details)
