"""Model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

Cascading randomisation: re-initialise the model's parameter groups top-down (last layer first,
cumulatively) on a copy of the model and measure how similar the explanation stays. An explanation
that does not change when the model is destroyed does not explain the model. Controls run beside it
(Binder et al. 2023): a model-independent map scores 1.0 here, showing what "no dependence" looks like.
A pass is necessary, not sufficient; never rank explainers by it.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from harness.checks.context import ModelContext, explain_batched
from harness.checks.localisation import positives
from harness.checks.registry import Measurement, register_check
from harness.metrics import bootstrap_ci, spearman


def parameter_groups(model: nn.Module, depth: int = 3) -> "OrderedDict[str, list[str]]":
    """Parameter names grouped by owning module path (first ``depth`` components), in forward order.

    Forward order is approximated by parameter registration order, which timm and torchvision
    follow (stem, stages, head). Tensors owned directly by a container, such as a ViT's
    ``cls_token`` and ``pos_embed``, form their container's group (model-level parameters).
    """
    groups: OrderedDict[str, list[str]] = OrderedDict()
    for name, _ in model.named_parameters():
        key = ".".join(name.split(".")[:-1][:depth]) or name
        groups.setdefault(key, []).append(name)
    return groups


@torch.no_grad()
def randomise_group(model: nn.Module, names: list[str], seed: int) -> None:
    """Re-initialise the named parameters in place, deterministically (global RNG untouched).

    Leaf modules with ``reset_parameters`` (conv, linear, norm) use their own initialisation;
    any other tensor (position embeddings, class tokens, layer scales) is drawn from
    N(0, std of the original, or 0.02 when that is zero).
    """
    params = dict(model.named_parameters())
    reset: set[str] = set()
    device = next(iter(params.values())).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for name in names:
            owner_path = name.rpartition(".")[0]
            owner = model.get_submodule(owner_path) if owner_path else model
            is_leaf = next(owner.children(), None) is None
            if is_leaf and hasattr(owner, "reset_parameters"):
                if owner_path not in reset:
                    owner.reset_parameters()
                    reset.add(owner_path)
                continue
            p = params[name]
            std = float(p.float().std()) if p.numel() > 1 else 0.0
            p.normal_(0.0, std if std > 0 else 0.02)


@register_check("model_randomisation", category="randomisation")
def check_model_randomisation(ctx: ModelContext, explainer: str, *, split: str = "test",
                              n_images: int = 32, absolute: bool = False, n_boot: int = 1000,
                              seed: int = 0) -> Measurement:
    """Cascading model-parameter randomisation: Spearman similarity of maps, original vs randomised.

    Run it with a control explainer beside (``random``): the runner judges controls inverted.
    """
    idx = positives(ctx, split)[:n_images]
    reference = ctx.maps(explainer, split)[idx]
    curve, final = cascading_similarity(ctx.model, ctx.explainer(explainer), ctx.images(split)[idx],
                                        absolute, seed, reference=reference)
    boot = bootstrap_ci(final, n_boot=n_boot, seed=seed)
    details = {"split": split, "absolute": absolute, "curve": curve}
    return Measurement("spearman_after_randomisation", boot.estimate, boot.low, boot.high, boot.n, details)


def cascading_similarity(model: nn.Module, explainer, images: torch.Tensor, absolute: bool, seed: int,
                         *, reference: torch.Tensor | None = None) -> tuple[list[tuple[str, float]], torch.Tensor]:
    """Per-step mean similarity (top-down, cumulative) and the per-image similarity at the last step.

    ``reference`` are the original model's maps of ``images`` when already computed.
    """
    batch = 64
    if reference is None:
        reference = explain_batched(model, explainer, images, batch)
    randomised = copy.deepcopy(model)
    groups = list(parameter_groups(randomised).items())[::-1]
    curve: list[tuple[str, float]] = []
    sims = torch.ones(images.shape[0])
    for step, (group, names) in enumerate(groups):
        randomise_group(randomised, names, seed + step)
        maps = explain_batched(randomised, explainer, images, batch)
        a, b = (reference.abs(), maps.abs()) if absolute else (reference, maps)
        sims = spearman(a, b)
        curve.append((group, float(sims.nanmean())))
    return curve, sims
