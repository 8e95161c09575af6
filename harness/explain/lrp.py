"""Layer-wise Relevance Propagation through zennit, only on structures whose relevance it conserves."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.explain.base import Explainer, ExplainerUnsupported, register_explainer, target_scores
from harness.explain.hooks import eval_mode, gradients_enabled, usable_images
from harness.models.architectures import ClassifierNet, is_token_model
from harness.models.preprocess import Preprocess

#: The z-score preprocessing's ``eps`` (``harness.models.preprocess.zscore``): ``(x - mean) / (std + eps)``.
ZSCORE_EPS = 1e-6

#: Leaf modules of a "plain" ``nn.Sequential`` CNN, each of which zennit's rules cover.
PLAIN_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity,
)


def lrp_backbone(model: nn.Module) -> nn.Module:
    """The module LRP runs on: a ClassifierNet's backbone (after its fixed input transform), else the model."""
    return model.backbone if isinstance(model, ClassifierNet) else model


def backbone_input(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(z, low, high)``: the backbone's input and the [0,1] pixel range mapped into its space.

    A ClassifierNet feeds its backbone ``z = (q - mean) / std``, where ``q`` is the [0,1] image
    after any CLAHE, and mean/std are either the fixed 0.5/0.25 or, for z-scoring preprocessing,
    each image's own; ``low`` and ``high`` are the images of 0 and 1 under that map (the box of the
    z^B rule). Any other model is its own backbone on the raw images, bounds 0 and 1. Pixels map one
    to one, so the relevance of ``z[i]`` is the relevance of pixel ``i``.
    """
    if not isinstance(model, ClassifierNet):
        return images, torch.zeros_like(images[:1]), torch.ones_like(images[:1])
    preprocess = getattr(model, "preprocess", None)
    if preprocess is None:
        q, standardise = images, False
    else:  # the [0,1] image before z-scoring: the same preprocessing without it
        q, standardise = Preprocess("clahe" if "clahe" in preprocess.kind else "none")(images), preprocess.standardises
    if standardise:
        mean = q.mean(dim=(1, 2, 3), keepdim=True)
        std = q.std(dim=(1, 2, 3), keepdim=True, unbiased=False) + ZSCORE_EPS
    else:
        mean, std = model.input_mean, model.input_std
    return (q - mean) / std, (0 - mean) / std, (1 - mean) / std


def is_plain_sequential(module: nn.Module) -> bool:
    """An ``nn.Sequential`` (nested ones allowed) made only of :data:`PLAIN_LAYERS`."""
    if type(module) is not nn.Sequential:
        return False
    leaves = [m for m in module.modules() if type(m) is not nn.Sequential]
    return bool(leaves) and all(isinstance(m, PLAIN_LAYERS) for m in leaves)


def lrp_canonizers(backbone: nn.Module) -> list:
    """zennit canonizers for a supported backbone; :class:`ExplainerUnsupported` with the reason otherwise.

    Supported: torchvision ``ResNet`` (``ResNetCanonizer``: merges BatchNorm, routes each residual
    addition through a ``Sum`` module that splits relevance), torchvision ``VGG`` (``VGGCanonizer``)
    and plain ``nn.Sequential`` CNNs (``SequentialMergeBatchNorm``).
    """
    import torchvision
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer

    if isinstance(backbone, torchvision.models.ResNet):
        return [ResNetCanonizer()]
    if isinstance(backbone, torchvision.models.VGG):
        return [VGGCanonizer()]
    if is_plain_sequential(backbone):
        return [SequentialMergeBatchNorm()]
    raise ExplainerUnsupported(unsupported_reason(backbone))


def unsupported_reason(backbone: nn.Module) -> str:
    """Why zennit 0.5.1 cannot conserve relevance through ``backbone`` (ANCHORS.md)."""
    kind = f"{type(backbone).__module__}.{type(backbone).__name__}"
    if is_token_model(backbone):
        why = "zennit 0.5.1 has no LRP rules for attention, LayerNorm or GELU (vision transformers)"
    elif type(backbone).__module__.startswith("timm.") and type(backbone).__name__ == "ResNet":
        why = ("its residual additions are plain tensor ops that zennit's ResNetCanonizer (torchvision "
               "BasicBlock/Bottleneck only) cannot route through a Sum rule: each one doubles the relevance "
               "(2^blocks x the logit with live residual branches; 8-337x measured on trained models)")
    elif "densenet" in type(backbone).__name__.lower():
        why = "zennit 0.5.1 has no DenseNet canonizer (concatenations, BatchNorm before convolution)"
    else:
        why = "supported are torchvision ResNet and VGG, and plain nn.Sequential CNNs"
    return f"LRP unsupported for {kind}: {why}"


def conservation_error(relevance: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Per sample ``|sum(R) - logit| / max(|logit|, 1e-3)``: 0 when relevance is conserved."""
    total = relevance.flatten(1).sum(1)
    return (total - scores).abs() / scores.abs().clamp_min(1e-3)


def logit_seed(logits: torch.Tensor, targets: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """The initial relevance ``[B,K]``: each sample's target logit at its target, zero elsewhere."""
    index = targets.to(logits.device, torch.long)[:, None]
    return torch.zeros_like(logits).scatter(1, index, scores.detach()[:, None])


class LRPExplainer(Explainer):
    """LRP (Bach et al., PLoS ONE 2015) with a zennit composite; relevance of the target logit.

    The backward starts from the target logit itself, so the input relevance sums to it. Rules
    run on the backbone's input space: a ClassifierNet's input transform (fixed ``(x - 0.5) / 0.25``
    or per-image z-scoring, see :func:`backbone_input`) is applied first, and the relevance of each
    transformed pixel is that pixel's relevance. Multi-channel relevance is summed over channels.
    Unsupported structures (timm ResNets, DenseNets, ViTs, anything but torchvision ResNet/VGG and
    plain ``nn.Sequential`` CNNs) raise :class:`ExplainerUnsupported` before any work. Biases are
    left out of the rules by default (zennit ``zero_params=["bias"]``), so relevance is conserved
    exactly up to the stabilisers; after each call the conservation is verified (cheap: one sum)
    and a relative error above ``tolerance`` also raises :class:`ExplainerUnsupported`.

    Args:
        epsilon: stabiliser of the epsilon rule (dense layers).
        ignore_bias: leave biases out of the rules (conservation); False keeps zennit's default,
            where biases absorb relevance, and then ``tolerance`` should be loosened or None.
        tolerance: largest accepted relative conservation error; None skips the check.
    """

    category = "lrp"
    view = "relu"

    def __init__(self, *, epsilon: float = 1e-6, ignore_bias: bool = True, tolerance: float | None = 0.05) -> None:
        self.epsilon, self.ignore_bias, self.tolerance = float(epsilon), bool(ignore_bias), tolerance

    def composite(self, canonizers: list, low: torch.Tensor, high: torch.Tensor) -> Any:
        """The zennit composite; ``low``/``high`` bound the backbone's input (for box rules)."""
        raise NotImplementedError

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        backbone = lrp_backbone(model)
        canonizers = lrp_canonizers(backbone)
        with eval_mode(model), gradients_enabled():
            with torch.no_grad():
                z, low, high = backbone_input(model, usable_images(images))
            z = z.detach().requires_grad_(True)
            composite = self.composite(canonizers, low, high)
            with composite.context(backbone):
                logits = backbone(z)
                scores = target_scores(logits, targets)
                (relevance,) = torch.autograd.grad(logits, z, grad_outputs=logit_seed(logits, targets, scores))
        relevance = relevance.detach().sum(1, keepdim=True)
        self.check_conservation(relevance, scores.detach())
        return relevance

    def check_conservation(self, relevance: torch.Tensor, scores: torch.Tensor) -> None:
        """Raise :class:`ExplainerUnsupported` when the relevance does not sum to the target logit."""
        if self.tolerance is None or relevance.shape[0] == 0:
            return
        error = conservation_error(relevance, scores)
        if bool((error > self.tolerance).any()):
            raise ExplainerUnsupported(
                f"{self.name}: relevance not conserved (relative error up to {float(error.max()):.3g} > "
                f"{self.tolerance}); the model's structure is not what zennit's canonizers expect"
            )

    def zero_params(self) -> list[str] | None:
        return ["bias"] if self.ignore_bias else None


@register_explainer
class LRPEpsilonPlusFlat(LRPExplainer):
    """LRP with zennit's EpsilonPlusFlat composite (Kohlbrenner et al. 2020).

    Flat rule on the first layer, z+ on the other convolutions, epsilon on dense layers.
    """

    name = "lrp_epsilon_plus_flat"
    description = "LRP EpsilonPlusFlat via zennit 0.5.1 (torchvision ResNet/VGG, plain Sequential CNNs)"

    def composite(self, canonizers: list, low: torch.Tensor, high: torch.Tensor) -> Any:
        from zennit.composites import EpsilonPlusFlat

        return EpsilonPlusFlat(epsilon=self.epsilon, zero_params=self.zero_params(), canonizers=canonizers)


@register_explainer
class LRPEpsilonGammaBox(LRPExplainer):
    """LRP with zennit's EpsilonGammaBox composite (Montavon et al. 2019).

    z^B box rule on the first layer, bounded by the pixel range [0,1] mapped into the backbone's
    input space (``-2..2`` under ClassifierNet's ``(x - 0.5) / 0.25``; per image under z-scoring),
    gamma on the other convolutions, epsilon on dense layers.

    Args:
        gamma: the gamma rule's weight on positive contributions (zennit default 0.25).
    """

    name = "lrp_epsilon_gamma_box"
    description = "LRP EpsilonGammaBox via zennit 0.5.1 (box bounds of [0,1] images; same support)"

    def __init__(self, *, gamma: float = 0.25, **options: Any) -> None:
        super().__init__(**options)
        self.gamma = float(gamma)

    def composite(self, canonizers: list, low: torch.Tensor, high: torch.Tensor) -> Any:
        from zennit.composites import EpsilonGammaBox

        return EpsilonGammaBox(low=low, high=high, epsilon=self.epsilon, gamma=self.gamma,
                               zero_params=self.zero_params(), canonizers=canonizers)
