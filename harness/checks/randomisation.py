"""Randomisation sanity checks (Adebayo et al. 2018; Sixt et al. 2020) on the model under test.

Model-parameter randomisation: re-initialise the model's layers on a copy (cascading top-down, or
independently) and measure how similar the explanation stays; an explanation that does not change
when the model is destroyed does not explain the model. Random logit: the map of another class
should differ from the target's. Controls run beside them as their own items (Binder et al. 2023):
a model-independent map scores 1.0, showing what "no dependence" looks like. A pass is necessary,
not sufficient; never rank explainers by it.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from harness.explain.context import ModelContext, explain_batched
from harness.checks.localisation import patient_ci, positives
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.metrics import auroc
from harness.metrics.randomisation import model_parameter_randomisation, random_logit, unchanged_is_identical
from harness.metrics.registry import get_metric


def similarity_fn(name: str, absolute: bool = False) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """A registered similarity metric by name (``spearman``, ``ssim``...), optionally of absolute maps."""
    spec = get_metric(name)
    if spec.category != "similarity":
        raise ValueError(f"{name!r} is a {spec.category} metric, not a similarity; see `xai-harness list metrics`")
    return (lambda a, b: spec.fn(a.abs(), b.abs())) if absolute else spec.fn


def batched_explain_fn(ctx: ModelContext, explainer: str):
    """``explain_fn(model, images, targets)`` over ``ctx.batch_size`` chunks, returning CPU maps."""
    method = ctx.explainer(explainer)

    def explain(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return explain_batched(model, method, images, ctx.batch_size, target=targets)

    return explain


@register_check("model_randomisation", category="randomisation", reference="the un-randomised model's own maps")
def check_model_randomisation(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 32,
                              order: str = "cascading", granularity: str = "block", similarity: str = "spearman",
                              absolute: bool = False, n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Model-parameter randomisation: similarity of maps, original vs randomised model (lower is better).

    Cascading: per-image similarity after every layer is randomised; independent: the mean over
    single-layer randomisations. Run a control explainer beside it (``random``, ``edge``).
    """
    idx = positives(ctx, split)[:n_images]
    images, targets = ctx.images(split)[idx], ctx.target_tensor(idx.numel())
    result = model_parameter_randomisation(
        ctx.model, batched_explain_fn(ctx, explainer), images, targets, order=order, granularity=granularity,
        similarity=similarity_fn(similarity, absolute), seed=seed, reference=ctx.maps(explainer, split)[idx])
    per_image = result.last if order == "cascading" else result.similarity.nanmean(0)
    boot = patient_ci(ctx, split, idx, per_image, n_boot, seed)
    details = {"split": split, "order": order, "granularity": granularity, "similarity": similarity,
               "absolute": absolute, "curve": result.curve()}
    return Measurement.of(f"{similarity}_after_randomisation", boot, details)


@register_check("random_logit", category="randomisation", reference="the target class's own maps")
def check_random_logit(ctx: ModelContext, explainer: str, *, split: str = "test", n_images: int = 64,
                       similarity: str = "spearman", absolute: bool = False, n_boot: int = 1000,
                       seed: int = 0) -> Measurement:
    """Random-logit test: similarity of the positive class's map to another class's map (lower is better).

    Needs a head whose logits are independent: a multi-label (sigmoid) model, or a softmax over at
    least 3 classes. With a 2-logit softmax head the other class's map is (almost) the negative of
    the target's, because only the logit difference is trained: the similarity is about -1 for any
    model and explainer, so the test cannot fail and skips with that reason.
    """
    if not ctx.multilabel and ctx.num_classes == 2:
        raise CheckSkipped(f"model {ctx.name!r} has a 2-logit softmax head: the other class's map is about the "
                           "negative of the target's, so the random-logit test cannot fail (it needs >= 3 classes or "
                           "a multi-label head)")
    idx = positives(ctx, split)[:n_images]
    images, targets = ctx.images(split)[idx], ctx.target_tensor(idx.numel())
    sims = random_logit(ctx.model, batched_explain_fn(ctx, explainer), images, targets,
                        num_classes=ctx.num_classes, generator=torch.Generator().manual_seed(seed),
                        similarity=similarity_fn(similarity, absolute), reference=ctx.maps(explainer, split)[idx])
    boot = patient_ci(ctx, split, idx, sims, n_boot, seed)
    details = {"split": split, "similarity": similarity, "absolute": absolute, "num_classes": ctx.num_classes}
    return Measurement.of(f"{similarity}_to_other_class", boot, details)


@register_check("data_randomisation", category="randomisation", reference="label-shuffled twin")
def check_data_randomisation(ctx: ModelContext, explainer: str, *, split: str = "test", label_seed: int = 0,
                             similarity: str = "spearman", absolute: bool = False, n_boot: int = 1000,
                             seed: int = 0) -> Measurement:
    """Data randomisation (Adebayo et al. 2018): similarity of maps to those of the same recipe trained on shuffled labels.

    The twin model sees the same images with permuted labels, so it can only memorise; an
    explanation that looks the same for both reflects the images or the architecture, not what the
    model learned from the labels. Lower is better. Trains the twin on first use.
    """
    twin = ctx.twins.shuffled_labels(label_seed)
    if twin is None:
        raise CheckSkipped(f"model {ctx.name!r} is not a zoo model: no label-shuffled twin can be trained (name "
                           "one with --shuffled-twin PATH)")
    idx = positives(ctx, split)
    compare = unchanged_is_identical(similarity_fn(similarity, absolute))
    sims = compare(ctx.maps(explainer, split)[idx], ctx.maps(explainer, split, model=twin)[idx])
    boot = patient_ci(ctx, split, idx, sims, n_boot, seed)
    twin_auroc = float(auroc(ctx.scores(split, model=twin), ctx.labels(split)))
    details = {"split": split, "similarity": similarity, "absolute": absolute, "label_seed": label_seed,
               "twin_auroc": twin_auroc}
    return Measurement.of(f"{similarity}_to_shuffled_label_model", boot, details)


__all__ = ["similarity_fn", "batched_explain_fn"]
