"""Torchvision-built architectures: AlexNet (timm has none) and torchvision ResNet/VGG for LRP.

zennit's canonizers (``ResNetCanonizer``, ``VGGCanonizer``) recognise torchvision's module
structure only (ANCHORS.md: on timm ResNets relevance is not conserved), so ``tv_resnet18``,
``tv_resnet50`` and ``tv_vgg16`` exist beside the timm models. Each gets a single-channel stem,
initialised the way the torchvision constructor initialises the three-channel one, and declares its
Grad-CAM target with the torchvision module path pytorch-grad-cam recommends: ``layer4`` for
ResNets, ``features[-1]`` (the last max-pool) for VGG and AlexNet. State-dict keys stay
torchvision's, so torchvision ImageNet weights from a local file load with ``pretrained.py``.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from harness.models.architectures import CAM_TARGET_ATTR, register_architecture


def _single_channel(conv: nn.Conv2d, init: Callable[[nn.Conv2d], None] | None) -> nn.Conv2d:
    """A copy of ``conv``'s geometry with one input channel, initialised by ``init`` (None: torch default)."""
    stem = nn.Conv2d(1, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                     dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                     device=conv.weight.device, dtype=conv.weight.dtype)
    if init is not None:
        init(stem)
    return stem


def _kaiming_fan_out(conv: nn.Conv2d) -> None:
    """torchvision's ResNet/VGG conv init."""
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _tv_resnet(name: str, num_classes: int) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    model.conv1 = _single_channel(model.conv1, _kaiming_fan_out)
    setattr(model, CAM_TARGET_ATTR, "layer4")
    return model


@register_architecture("tv_resnet18", description="ResNet-18 (torchvision; zennit LRP canonizers apply)",
                       family="cnn", source="torchvision", cpu_img_per_s=None, gpu_img_per_s=None)
def tv_resnet18(img_size: int, num_classes: int) -> nn.Module:
    """torchvision ResNet-18 with a single-channel stem."""
    return _tv_resnet("resnet18", num_classes)


@register_architecture("tv_resnet50", description="ResNet-50 (torchvision; zennit LRP canonizers apply)",
                       family="cnn", source="torchvision", cpu_img_per_s=None, gpu_img_per_s=None)
def tv_resnet50(img_size: int, num_classes: int) -> nn.Module:
    """torchvision ResNet-50 with a single-channel stem."""
    return _tv_resnet("resnet50", num_classes)


@register_architecture("tv_vgg16", description="VGG-16 (torchvision trunk, pooled linear head; zennit LRP "
                       "canonizers apply)", family="cnn", source="torchvision", cpu_img_per_s=None,
                       gpu_img_per_s=None)
def tv_vgg16(img_size: int, num_classes: int) -> nn.Module:
    """torchvision VGG-16, single-channel stem, global average pooling + one linear layer.

    The pooled head replaces torchvision's 7x7-pooled 25088-4096-4096 MLP (120M of 138M
    parameters) for the reasons given in ``architectures._pooled_vgg``; the module stays a
    ``torchvision.models.VGG`` with ``features`` / ``avgpool`` / ``classifier``, as zennit expects.
    """
    import torchvision

    model = torchvision.models.vgg16(weights=None, num_classes=num_classes)
    model.features[0] = _single_channel(model.features[0], _kaiming_fan_out)
    model.avgpool = nn.AdaptiveAvgPool2d(1)
    model.classifier = nn.Linear(512, num_classes, device=model.features[0].weight.device)
    nn.init.normal_(model.classifier.weight, 0, 0.01)  # torchvision's VGG init for linear layers
    nn.init.zeros_(model.classifier.bias)
    setattr(model, CAM_TARGET_ATTR, f"features.{len(model.features) - 1}")
    return model


@register_architecture("alexnet", description="AlexNet (torchvision; timm has none), single-channel stem",
                       family="cnn", source="torchvision", cpu_img_per_s=None, gpu_img_per_s=None)
def alexnet(img_size: int, num_classes: int) -> nn.Module:
    """torchvision AlexNet as published (6x6 adaptive pool, 9216-4096-4096 classifier), 1-channel stem.

    Its Grad-CAM target is ``features[-1]``, the last max-pool (6x6 at 224x224, 1x1 at 64x64).
    """
    import torchvision

    model = torchvision.models.alexnet(weights=None, num_classes=num_classes)
    model.features[0] = _single_channel(model.features[0], None)  # AlexNet uses torch's default init
    setattr(model, CAM_TARGET_ATTR, f"features.{len(model.features) - 1}")
    return model


__all__ = ["tv_resnet18", "tv_resnet50", "tv_vgg16", "alexnet"]
