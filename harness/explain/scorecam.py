"""Score-CAM, batched in torch over (sample, channel) pairs with a bound on images per forward pass."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.explain.base import check_targets, model_attr, register_explainer, target_scores
from harness.explain.gradcam import CAMExplainer
from harness.explain.hooks import capture_output, eval_mode, usable_images


@register_explainer
class ScoreCAM(CAMExplainer):
    """Score-CAM (Wang et al., CVPR Workshops 2020): channel weights from masked forward passes.

    Each activation channel ``A_k`` is upsampled to the input (bilinear, ``align_corners=True``),
    min-max normalised to a mask ``M_k``, and the weight is the softmax over channels of the target
    logit of ``image * M_k``. This is pytorch-grad-cam's ``ScoreCAM`` formula (tested equal to it),
    without its per-sample loop, per-score device sync, progress bars and the activations its hooks
    keep recording during the B*C masked passes.

    Cost: ``B * C`` extra forward passes (C = channels of the target layer), run ``batch_size``
    masked images at a time, so memory holds at most ``batch_size`` images beyond the batch. Small
    inputs work: a 1x1 feature map gives constant masks that normalise to zero, equal scores, uniform
    weights and a constant map (no location preferred).

    Args:
        batch_size: masked images per forward pass (the memory bound).
    """

    name = "scorecam"
    description = "Score-CAM, batched torch (B*C masked forward passes; option batch_size)"

    def __init__(self, *, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

    def layer_maps(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Raw Score-CAMs ``[B,1,h,w]`` at the target layer's resolution."""
        check_targets(images, targets)
        layer = model_attr(model, "target_layer")
        reshape = model_attr(model, "reshape_transform")
        x = usable_images(images)
        with eval_mode(model), torch.inference_mode(False), torch.no_grad():
            with capture_output(layer) as captured:
                model(x)
            activation = captured.single().detach()
            activation = reshape(activation) if reshape is not None else activation
            if activation.ndim != 4:
                raise ValueError(f"target layer output must be [B,C,h,w], got {tuple(activation.shape)}")
            weights = torch.softmax(self.masked_scores(model, x, activation, targets), dim=1)
        return (weights[:, :, None, None] * activation).sum(1, keepdim=True)

    def masked_scores(
        self, model: nn.Module, images: torch.Tensor, activation: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Target logit of ``image_b * M_bk`` for every sample b and channel k, ``[B,C]``."""
        b, c = activation.shape[:2]
        targets = targets.to(images.device)
        scores = []
        for pairs in torch.arange(b * c, device=images.device).split(self.batch_size):
            sample, channel = pairs // c, pairs % c
            masks = channel_masks(activation[sample, channel], tuple(images.shape[-2:]))
            scores.append(target_scores(model(images[sample] * masks), targets[sample]))
        return torch.cat(scores).view(b, c)


def channel_masks(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Activation maps ``[N,h,w]`` -> masks ``[N,1,H,W]`` in [0,1]: bilinear (corners aligned), min-max."""
    up = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=True)
    flat = up.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo + 1e-8)).view_as(up)
