"""Gradient explainers: input gradient, gradient x input, Integrated Gradients, SmoothGrad, Guided Backprop.

All differentiate each sample's target logit with respect to the image in [0,1] (the model's
input), never touch parameter ``.grad`` (``torch.autograd.grad`` with respect to the input only),
and sum multi-channel inputs over channels. Methods that need many passes (Integrated Gradients,
SmoothGrad) run at most ``internal_batch_size`` images per forward pass, so ``B * steps`` images
are never held at once.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn

from harness.explain.base import Explainer, ExplainerUnsupported, register_explainer, target_scores
from harness.explain.hooks import eval_mode, gradients_enabled, usable_images


def target_gradients(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """d logit[target] / d image for every sample, ``[B,C,H,W]`` (one backward for the batch).

    In eval mode the samples of a batch are independent, so the gradient of the summed target
    logits is every sample's own gradient. Call inside ``eval_mode`` and ``gradients_enabled``.
    """
    x = usable_images(images).requires_grad_(True)
    (grad,) = torch.autograd.grad(target_scores(model(x), targets).sum(), x)
    return grad


def summed_gradients(
    model: nn.Module, variants: Iterable[torch.Tensor], targets: torch.Tensor, max_images: int
) -> torch.Tensor:
    """Sum over ``variants`` (each ``[B,C,H,W]``, aligned with ``targets``) of their target gradients.

    Variants are packed into forward passes of at most ``max_images`` images (several variants per
    pass when the batch is small, a variant split over passes when it is large); only one variant
    and one pass are held at a time.
    """
    targets = targets.to(dtype=torch.long)
    total: torch.Tensor | None = None
    for images, owners in packed(variants, max_images):
        grads = target_gradients(model, images, targets.to(owners.device)[owners])
        if total is None:
            total = torch.zeros((len(targets), *grads.shape[1:]), dtype=grads.dtype, device=grads.device)
        total.index_add_(0, owners, grads)
    if total is None:
        raise ValueError("no variants to differentiate")
    return total


def packed(variants: Iterable[torch.Tensor], max_images: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(images, owner sample index)`` chunks of at most ``max_images`` images over all variants."""
    pending: list[tuple[torch.Tensor, torch.Tensor]] = []
    count = 0
    for variant in variants:
        owners = torch.arange(variant.shape[0], device=variant.device)
        for part, own in zip(variant.split(max_images), owners.split(max_images)):
            if count + part.shape[0] > max_images:
                yield torch.cat([p for p, _ in pending]), torch.cat([o for _, o in pending])
                pending, count = [], 0
            pending.append((part, own))
            count += part.shape[0]
    if pending:
        yield torch.cat([p for p, _ in pending]), torch.cat([o for _, o in pending])


class GradientExplainer(Explainer):
    """Base of the gradient family: signed maps, displayed by magnitude (``abs`` view)."""

    category = "gradient"
    view = "abs"


@register_explainer
class InputGradient(GradientExplainer):
    """Vanilla saliency (Simonyan et al., ICLR Workshop 2014): d logit[target] / d image, signed."""

    name = "gradient"
    description = "input gradient of the target logit (vanilla saliency)"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with eval_mode(model), gradients_enabled():
            grad = target_gradients(model, usable_images(images), targets)
        return grad.sum(1, keepdim=True)


@register_explainer
class GradientXInput(GradientExplainer):
    """Gradient x input (Shrikumar et al. 2016; Ancona et al., ICLR 2018): ``image * gradient``.

    The input is the image in [0,1] (the model's input, before any internal normalisation), so
    the implicit reference is a black image, as for ``integrated_gradients``' default baseline.
    """

    name = "gradient_x_input"
    description = "gradient x input (image in [0,1]; implicit black reference)"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with eval_mode(model), gradients_enabled():
            x = usable_images(images)
            return (x * target_gradients(model, x, targets)).sum(1, keepdim=True)


@register_explainer
class IntegratedGradients(GradientExplainer):
    """Integrated Gradients (Sundararajan et al., ICML 2017), midpoint rule on a straight path.

    ``(x - x0) * mean_k grad f(x0 + a_k (x - x0))`` with ``a_k = (k + 1/2) / steps``. Completeness:
    the attributions sum to ``f(x) - f(x0)`` (f = target logit) up to the quadrature error, which
    shrinks as ``1/steps^2`` on smooth models. Passes hold at most ``internal_batch_size`` images.

    Args:
        steps: points on the path (default 32).
        baseline: the baseline's constant pixel value (default 0.0: a black image).
        internal_batch_size: images per forward pass (the memory bound).
    """

    name = "integrated_gradients"
    description = "Integrated Gradients (black baseline, 32 midpoint steps, batched over steps)"

    def __init__(self, *, steps: int = 32, baseline: float = 0.0, internal_batch_size: int = 64) -> None:
        if steps < 1 or internal_batch_size < 1:
            raise ValueError(f"steps and internal_batch_size must be >= 1, got {steps}, {internal_batch_size}")
        self.steps, self.baseline, self.internal_batch_size = int(steps), float(baseline), int(internal_batch_size)

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with eval_mode(model), gradients_enabled():
            x = usable_images(images)
            x0 = torch.full_like(x, self.baseline)
            alphas = ((torch.arange(self.steps, dtype=torch.float64) + 0.5) / self.steps).tolist()
            path = (x0 + a * (x - x0) for a in alphas)
            total = summed_gradients(model, path, targets, self.internal_batch_size)
            return ((x - x0) * total / self.steps).sum(1, keepdim=True)


@register_explainer
class SmoothGrad(GradientExplainer):
    """SmoothGrad (Smilkov et al. 2017): the input gradient averaged over ``n`` noisy copies.

    Noise is Gaussian with standard deviation ``sigma * (max - min)`` of each image (the paper's
    noise level; an image with no range uses the nominal [0,1] range). The ``n`` unit-noise images
    are drawn once per call, on the CPU, from a ``torch.Generator`` seeded with ``seed``, and shared
    by every image of the batch (batched: one draw ``[n,C,H,W]``). So a map depends only on the
    image, the model and the seed: not on the batch, the device or ``internal_batch_size``, and a
    perturbed image is explained with the same noise as the original (common random numbers).

    Args:
        n: noisy copies per image (default 16).
        sigma: noise level as a fraction of the image's range (default 0.15).
        seed: generator seed.
        internal_batch_size: images per forward pass (the memory bound).
    """

    name = "smoothgrad"
    description = "SmoothGrad: mean input gradient over n=16 noisy copies (sigma 15% of range, seeded)"

    def __init__(self, *, n: int = 16, sigma: float = 0.15, seed: int = 0, internal_batch_size: int = 64) -> None:
        if n < 1 or internal_batch_size < 1 or sigma < 0:
            raise ValueError(f"need n, internal_batch_size >= 1, sigma >= 0; got {n}, {internal_batch_size}, {sigma}")
        self.n, self.sigma, self.seed = int(n), float(sigma), int(seed)
        self.internal_batch_size = int(internal_batch_size)

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with eval_mode(model), gradients_enabled():
            x = usable_images(images)
            span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, *[1] * (x.ndim - 1))
            std = self.sigma * torch.where(span > 0, span, torch.ones_like(span))
            noise = torch.randn((self.n, *x.shape[1:]), generator=torch.Generator().manual_seed(self.seed)).to(x)
            noisy = (x + std * noise[k] for k in range(self.n))
            total = summed_gradients(model, noisy, targets, self.internal_batch_size)
            return (total / self.n).sum(1, keepdim=True)


#: The activations guided backprop is defined for (Springenberg et al. 2015): rectifiers.
GUIDED_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

#: Activation-module classes that are not elementwise nonlinearities (never reported as unguided).
NOT_ELEMENTWISE = frozenset({"Softmax", "Softmin", "LogSoftmax", "Softmax2d", "MultiheadAttention"})


class PositiveGradient(torch.autograd.Function):
    """Identity forward; the backward passes only the positive part of the incoming gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()  # a fresh tensor: a later in-place op never modifies the hooked output

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp_min(0)


def unguided_activations(model: nn.Module) -> list[str]:
    """Class names of elementwise activation modules guided backprop does not guide (GELU, SiLU, ...)."""
    names = set()
    for module in model.modules():
        where = type(module).__module__
        is_activation = where == "torch.nn.modules.activation" or where.startswith("timm.layers.activations")
        guided = isinstance(module, GUIDED_ACTIVATIONS)
        if is_activation and not guided and type(module).__name__ not in NOT_ELEMENTWISE:
            names.add(type(module).__name__)
    return sorted(names)


@contextmanager
def guided_relus(model: nn.Module) -> Iterator[int]:
    """Guide every ``nn.ReLU``/``nn.ReLU6`` module (forward hooks, removed on exit even on error).

    Yields the number of guided modules. Raises :class:`ExplainerUnsupported` when the model has
    none, or has other elementwise activation modules that would stay unguided.
    """
    relus = [m for m in model.modules() if isinstance(m, GUIDED_ACTIVATIONS)]
    others = unguided_activations(model)
    if not relus or others:
        found = f"it has {', '.join(others)} activations" if others else "it has no ReLU modules"
        raise ExplainerUnsupported(
            f"guided backprop is defined for ReLU networks (guides nn.ReLU and nn.ReLU6 modules); "
            f"{type(model).__name__} cannot be guided faithfully: {found}"
        )
    handles = [m.register_forward_hook(lambda _m, _inputs, out: PositiveGradient.apply(out)) for m in relus]
    try:
        yield len(relus)
    finally:
        for handle in handles:
            handle.remove()


@register_explainer
class GuidedBackprop(GradientExplainer):
    """Guided Backpropagation (Springenberg et al., ICLR Workshop 2015).

    The input gradient of the target logit, where every ReLU passes back only positive gradients
    at positive inputs: ``dx = (x > 0) * relu(dy)``. Guided: ``nn.ReLU`` and ``nn.ReLU6`` modules,
    in place or not (a forward hook wraps each output in :class:`PositiveGradient`). Functional
    ``F.relu`` calls are invisible to hooks and stay plain gradients. Networks without ReLU modules
    or with other elementwise activations (GELU in ViTs, SiLU in EfficientNets) raise
    :class:`ExplainerUnsupported`: the method is not defined for them.

    Adebayo et al. (2018) found its maps barely change when the model is randomised (they look like
    edge detectors): run it beside the ``edge`` control.
    """

    name = "guided_backprop"
    description = "Guided Backpropagation (ReLU networks only; nn.ReLU/ReLU6 modules guided)"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with eval_mode(model), guided_relus(model), gradients_enabled():
            grad = target_gradients(model, usable_images(images), targets)
        return grad.sum(1, keepdim=True)
