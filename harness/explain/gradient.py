"""Plain input gradient (Simonyan et al. 2014, "vanilla saliency") of each sample's target logit."""

from __future__ import annotations

import torch
from torch import nn

from harness.explain.base import Explainer, register_explainer, target_scores
from harness.explain.hooks import eval_mode, gradients_enabled, usable_images


@register_explainer
class InputGradient(Explainer):
    """d logit[target] / d image, signed; the display view is its magnitude (``abs``, min-max).

    In eval mode the samples of a batch are independent, so one backward of the summed target
    logits gives every sample's own gradient. Multi-channel inputs are summed over channels.
    """

    name = "gradient"
    description = "input gradient of the target logit (vanilla saliency)"
    view = "abs"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with eval_mode(model), gradients_enabled():
            x = usable_images(images).clone().requires_grad_(True)
            score = target_scores(model(x), targets).sum()
            (grad,) = torch.autograd.grad(score, x)
        return grad.detach().sum(1, keepdim=True)
