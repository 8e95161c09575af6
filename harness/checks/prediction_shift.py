"""Prediction robustness: AUROC lost under an acquisition shift and under an adversarial attack.

Seed 001 (Ahmed 2025, "What a standard ResNet learns on NIH chest X-rays") lists what its evaluation
did not cover; two of those gaps are about the prediction rather than the map:

- out-of-distribution shift: the same patients imaged differently (another scanner's contrast,
  blur or noise), written as a perturbation (``harness.data.perturbations``);
- adversarial robustness: the fast gradient sign method (FGSM, Goodfellow et al. 2015, "Explaining
  and harnessing adversarial examples"), one signed-gradient step of ``epsilon`` (in [0,1] intensity
  units) that raises the loss of each image's own label of the checked class.

Both report AUROC on the split minus AUROC on the same images changed (lower is better), with a
paired cluster bootstrap: each replicate resamples patients, with all their images, for both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.data.perturbations import parse_perturbation
from harness.explain.context import POSITIVE_CLASS, ModelContext
from harness.metrics import auroc, bootstrap_statistic

ACQUISITION_SHIFT = "compose(contrast(factor=0.7), gaussian_blur(sigma=1.0), gaussian_noise(sigma=0.03))"


def paired_auroc_drop(ctx: ModelContext, split: str, changed: torch.Tensor, metric: str, reference: str,
                      n_boot: int, seed: int, **details) -> Measurement:
    """AUROC of the checked class on ``split`` minus AUROC on ``changed`` (``[N]`` scores of the same
    images), paired cluster bootstrap over patients."""
    labels, scores = ctx.labels(split), ctx.scores(split)
    if labels.unique().numel() < 2:
        raise CheckSkipped(f"split {split!r} has only one class of the checked finding: AUROC is undefined")
    drop = lambda s, c, y: auroc(s, y) - auroc(c, y)  # noqa: E731
    boot = bootstrap_statistic(drop, scores, changed, labels, groups=ctx.patients(split), n_boot=n_boot, seed=seed)
    clean, after = float(auroc(scores, labels)), float(auroc(changed, labels))
    flipped = int(((scores >= 0.5) != (changed >= 0.5)).sum())
    return Measurement.of(metric, boot, {"split": split, "auroc": clean, "auroc_changed": after,
                                         "n_predictions_flipped": flipped, **details},
                          {"name": reference, "value": after})


@register_check("shift_auroc_drop", category="performance", needs_explainer=False,
                reference="AUROC on the same images under the shift")
def check_shift_auroc_drop(ctx: ModelContext, explainer: str | None = None, *, perturbation: str = ACQUISITION_SHIFT,
                           split: str = "test", n_boot: int = 1000, seed: int = 0) -> Measurement:
    """AUROC lost when the same images are acquired differently (a perturbation), seed 001's OOD gap; lower is better."""
    change = parse_perturbation(perturbation)
    shifted = change.apply(ctx.images(split), torch.Generator().manual_seed(seed))
    changed = ctx.score_images(shifted)
    return paired_auroc_drop(ctx, split, changed, f"auroc_drop[{perturbation}]", f"AUROC under {perturbation}",
                             n_boot, seed, perturbation=perturbation)


@register_check("adversarial_auroc_drop", category="performance", needs_explainer=False,
                reference="AUROC on the same images after an FGSM step")
def check_adversarial_auroc_drop(ctx: ModelContext, explainer: str | None = None, *, epsilon: float = 0.002,
                                 split: str = "test", n_boot: int = 1000, seed: int = 0) -> Measurement:
    """AUROC lost under a one-step FGSM attack of ``epsilon`` (Goodfellow et al. 2015), seed 001's gap; lower is better."""
    if not 0 < epsilon < 1:
        raise ValueError(f"adversarial_auroc_drop: epsilon must lie in (0, 1) (intensity units), got {epsilon!r}")
    images, labels = ctx.images(split), ctx.labels(split)
    attacked = torch.cat([fgsm(ctx.model, x, y, ctx.target_class, epsilon, multilabel=ctx.multilabel)
                          for x, y in zip(images.split(ctx.batch_size), labels.split(ctx.batch_size))]) \
        if len(images) else images
    changed = ctx.score_images(attacked)
    return paired_auroc_drop(ctx, split, changed, f"auroc_drop[fgsm eps={epsilon:g}]", f"AUROC after FGSM {epsilon:g}",
                             n_boot, seed, epsilon=epsilon)


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, target: int, epsilon: float, *,
         multilabel: bool) -> torch.Tensor:
    """One FGSM step: ``images + epsilon * sign(grad loss)``, clamped to [0,1], on the CPU.

    The loss is the checked class's own: binary cross-entropy of logit ``target`` against ``labels``
    (multi-label), or the softmax cross-entropy of the positive class (binary models, ``target`` 1).
    The model is evaluated in eval mode and its gradients are left untouched.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = images.to(device).clone().requires_grad_(True)
    try:
        with torch.enable_grad():
            logits = model(x).float()
            y = labels.to(device).float()
            if multilabel:
                loss = F.binary_cross_entropy_with_logits(logits[:, target], y, reduction="sum")
            else:
                loss = F.cross_entropy(logits, (y == 1).long() * POSITIVE_CLASS, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
    finally:
        model.train(was_training)
    return (x.detach() + epsilon * grad.sign()).clamp(0, 1).cpu()
