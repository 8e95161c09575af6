"""Batched CAMs in torch: Grad-CAM and Grad-CAM++ (the backward stops at the target layer), Score-CAM."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.explain.base import Explainer, check_targets, model_attr, register_explainer, target_scores
from harness.explain.hooks import capture_output, eval_mode, gradients_enabled, usable_images


class CAMExplainer(Explainer):
    """A class-activation map: channel weights from gradients at ``model.target_layer``.

    ``layer_maps`` gives the linear, signed CAM ``c = sum_k w[b,k] * A[b,k,:,:]`` at the target
    layer's resolution. For ViTs, ``model.reshape_transform`` turns the tokens ``[B,T,C]`` and their
    gradients into ``[B,C,h,w]`` first. Subclasses only define ``channel_weights``.

    ``explain`` upsamples it bilinearly (``align_corners=False``, the convention of cv2's
    INTER_LINEAR that pytorch-grad-cam uses) in the order of the Grad-CAM paper and the library:
    ReLU at the layer resolution, then upsampling. The raw map keeps scale and sign: it is
    ``up(relu(c))`` wherever that is positive and ``up(c)`` (<= 0) where no positive cell reaches,
    so ``relu(raw)`` is exactly the paper's upsampled Grad-CAM and ``unit_view(raw)`` equals
    pytorch-grad-cam's [0,1] map. (Plain ``up(c)`` followed by a ReLU would differ from the library
    by up to 0.94, measured on a random-init ResNet-18, where neighbouring cells differ in sign.)
    Negative evidence is therefore kept only where no positive evidence is interpolated in, and the
    raw map jumps from ~0 to ``up(c)`` at that border; use ``layer_maps`` for the purely linear
    signed CAM.
    """

    category = "cam"
    view = "relu"

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """Weights ``[B,C]`` from activations and gradients ``[B,C,h,w]``."""
        raise NotImplementedError

    def layer_maps(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Raw signed CAMs ``[B,1,h,w]`` at the target layer's resolution (detached)."""
        check_targets(images, targets)
        layer = model_attr(model, "target_layer")
        reshape = model_attr(model, "reshape_transform")
        with eval_mode(model), gradients_enabled(), capture_output(layer) as captured:
            logits = model(usable_images(images))
            activation = captured.single()
            (grad,) = torch.autograd.grad(target_scores(logits, targets).sum(), activation)
        activation, grad = activation.detach(), grad.detach()
        if reshape is not None:
            activation, grad = reshape(activation), reshape(grad)
        if activation.ndim != 4:
            raise ValueError(
                f"target layer output must be [B,C,h,w] (after reshape_transform), got {tuple(activation.shape)}"
            )
        weights = self.channel_weights(activation, grad)
        return (weights[:, :, None, None] * activation).sum(1, keepdim=True)

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cams = self.layer_maps(model, images, targets)
        return paper_upsample(cams, tuple(images.shape[-2:]))


def paper_upsample(layer_maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``up(relu(c))`` where positive, else ``up(c)``: signed, and ReLU-before-upsample on its positive part."""
    positive = F.interpolate(layer_maps.clamp_min(0), size=size, mode="bilinear", align_corners=False)
    linear = F.interpolate(layer_maps, size=size, mode="bilinear", align_corners=False)
    return torch.where(positive > 0, positive, linear)


def layer_view(layer_maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """pytorch-grad-cam's [0,1] view: ReLU at layer resolution, min-max, bilinear upsample, min-max.

    Matches ``BaseCAM.compute_cam_per_layer`` + ``aggregate_multi_layers`` for one target layer
    (including its ``1e-7`` in the first normalisation) to float32 rounding.
    """
    flat = layer_maps.clamp_min(0).flatten(1)
    flat = flat - flat.min(1, keepdim=True).values
    flat = flat / (1e-7 + flat.max(1, keepdim=True).values)
    up = F.interpolate(flat.view_as(layer_maps), size=size, mode="bilinear", align_corners=False).flatten(1)
    up = up - up.min(1, keepdim=True).values
    return (up / (1e-7 + up.max(1, keepdim=True).values)).view(layer_maps.shape[0], 1, *size)


@register_explainer
class GradCAM(CAMExplainer):
    """Grad-CAM (Selvaraju et al., ICCV 2017): weights are the spatial mean of the gradients."""

    name = "gradcam"
    description = "Grad-CAM, batched torch; backward stops at the target layer"

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean(dim=(2, 3))


@register_explainer
class GradCAMPlusPlus(CAMExplainer):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018), weights as pytorch-grad-cam computes them.

    ``alpha = g^2 / (2 g^2 + sum_ij(A) g^3 + 1e-6)`` where ``g != 0`` (else 0), and
    ``w_c = sum_ij relu(g) * alpha`` (eq. 19 of the paper with the exponential-score shortcut).
    """

    name = "gradcam++"
    description = "Grad-CAM++, batched torch; backward stops at the target layer"

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2 = grads.pow(2)
        g3 = g2 * grads
        sum_activations = activations.sum(dim=(2, 3), keepdim=True)
        alpha = g2 / (2 * g2 + sum_activations * g3 + 1e-6)
        alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
        return (grads.clamp_min(0) * alpha).sum(dim=(2, 3))


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
        with eval_mode(model), torch.inference_mode(False), torch.no_grad():
            x = usable_images(images)
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
