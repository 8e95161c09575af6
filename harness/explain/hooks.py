"""Side effects of explaining, each undone on exit even on error: eval mode, hooks, autograd, grads."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode; restore each module's own previous flag on exit.

    BatchNorm in train mode mixes samples and changes CAMs, so explanations always run in eval.
    """
    previous = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, flag in previous:
            module.training = flag


@contextmanager
def gradients_enabled() -> Iterator[None]:
    """Autograd on, even when the caller runs under ``torch.no_grad()`` or ``torch.inference_mode()``."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@dataclass
class CapturedOutputs:
    """Outputs of one module recorded during a forward pass (as autograd leaves)."""

    module_name: str
    outputs: list[torch.Tensor] = field(default_factory=list)

    def single(self) -> torch.Tensor:
        """The one output of the module; raise if it ran zero or several times."""
        if len(self.outputs) != 1:
            raise RuntimeError(
                f"target layer {self.module_name} ran {len(self.outputs)} times in one forward pass; "
                "a CAM needs a layer that runs exactly once"
            )
        return self.outputs[0]


@contextmanager
def capture_output(module: nn.Module) -> Iterator[CapturedOutputs]:
    """Record ``module``'s output as a fresh autograd leaf that the rest of the forward pass uses.

    The forward hook replaces the output by a clone of ``output.detach().requires_grad_()``: the
    value is unchanged, ``torch.autograd.grad(score, leaf)`` gives exactly d score / d output, and the
    backward stops there (no graph is kept for earlier layers, no parameter receives a gradient).
    It also works when nothing before the layer requires grad, and when a later layer modifies the
    output in place (the recorded leaf keeps the layer's own output). The hook is removed on exit.
    """
    store = CapturedOutputs(type(module).__name__)

    def hook(_module: nn.Module, _inputs: tuple, output: object) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"target layer {store.module_name} must output a tensor, got {type(output)}")
        leaf = output.detach().requires_grad_(True)
        store.outputs.append(leaf)
        return leaf.clone()  # later in-place ops (ReLU(inplace=True)) modify the clone, not the leaf

    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


@contextmanager
def preserved_grads(model: nn.Module) -> Iterator[None]:
    """Restore every parameter's ``.grad`` on exit (for libraries that call ``backward``)."""
    saved = [(p, p.grad) for p in model.parameters()]
    try:
        yield
    finally:
        for p, grad in saved:
            p.grad = grad


def usable_images(images: torch.Tensor) -> torch.Tensor:
    """Images detached from any graph; inference-mode tensors are cloned so autograd may use them."""
    return images.detach().clone() if images.is_inference() else images.detach()
