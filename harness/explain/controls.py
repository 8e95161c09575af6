"""Model-independent controls: what a check scores when the map says nothing about the model.

Binder et al. (2023) show uninformative maps also "pass" model randomisation; run these beside the
real explainers so a report shows what "no dependence on the model" looks like.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from harness.explain.base import Explainer, register_explainer


def call_seed(seed: int, call: int) -> int:
    """A 63-bit seed from the run ``seed`` and the call's index: reproducible, never from the image."""
    digest = hashlib.blake2b(call.to_bytes(8, "little"), digest_size=8,
                             key=seed.to_bytes(8, "little", signed=True)).digest()
    return int.from_bytes(digest, "little") >> 1


@register_explainer
class RandomMap(Explainer):
    """Smooth random map: ``cells x cells`` Gaussian noise, bilinearly upsampled to the input size.

    A real control (Binder et al. 2023): the noise depends neither on the model nor on the image.
    Each call draws from a CPU generator seeded by the run ``seed`` and the index of the call on
    this instance, so a run is reproducible, while two calls (the original and the randomised
    model, an image and its perturbed copy) get independent noise. Where a condition passes such
    a map (model randomisation: noise is "dissimilar" to noise), the condition cannot tell noise
    from an explanation, and the report says so. Ignores the model and the targets (the targets
    count is still checked).
    """

    name = "random"
    description = "control: smooth random noise, independent of model and image (seeded by run and call)"
    category = "control"
    is_control = True
    view = "minmax"

    def __init__(self, *, seed: int = 0, cells: int = 7) -> None:
        if cells < 1:
            raise ValueError(f"cells must be >= 1, got {cells}")
        self.seed = seed
        self.cells = cells
        self.calls = 0

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(call_seed(self.seed, self.calls))
        self.calls += 1
        noise = torch.randn(images.shape[0], 1, self.cells, self.cells, generator=generator)
        maps = F.interpolate(noise, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return maps.to(images.device)


@register_explainer
class EdgeMap(Explainer):
    """Sobel gradient magnitude of the image itself: an input-edge detector, model-independent.

    Adebayo et al. (2018) found Guided Backprop maps look like this; a real explainer that scores
    like the edge control on a check is not showing the model's reasoning.
    """

    name = "edge"
    description = "control: Sobel edge magnitude of the input (model-independent)"
    category = "control"
    is_control = True
    view = "minmax"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = images.detach().float().sum(1, keepdim=True)
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device)
        kernels = torch.stack([kx, kx.T])[:, None]
        g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)
        return g.pow(2).sum(1, keepdim=True).sqrt()


@register_explainer
class ConstantMap(Explainer):
    """A constant map (``value`` everywhere): no preferred location at all.

    Its [0,1] view is all zeros (a constant map has no maximum to point at), so every localisation
    metric scores it as "nothing found"; for ties (e.g. the first argmax of a pointing game) it
    shows what a metric does with a map that says nothing. Ignores the model and the targets.
    """

    name = "constant"
    description = "control: a constant map (model- and image-independent)"
    category = "control"
    is_control = True
    view = "minmax"

    def __init__(self, *, value: float = 1.0) -> None:
        self.value = float(value)

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        return torch.full((b, 1, h, w), self.value, dtype=torch.float32, device=images.device)
