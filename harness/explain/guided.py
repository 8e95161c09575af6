"""Guided Backpropagation: the input gradient with negative gradients stopped at every ReLU."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from harness.explain.base import ExplainerUnsupported, register_explainer
from harness.explain.gradient import GradientExplainer, target_gradients
from harness.explain.hooks import eval_mode, gradients_enabled, usable_images

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
