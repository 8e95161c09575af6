"""Truncated architectures (seed 004, CheXtransfer): the final 1-3 blocks removed, pooled linear head.

A *block* is one of timm's feature stages (``feature_info``): a ResNet ``layerN``, a DenseNet dense
block (with its transition), a VGG conv block, an EfficientNet/MNASNet stride stage. Taps that no
parameter separates (VGG's final max-pool after its last ReLU) belong to the same block. Truncation
uses timm's own ``prune_intermediate_layers`` and then ``reset_classifier(num_classes, "avg")``
(global average pooling + one linear layer); the Grad-CAM target becomes the new last block, so
each removed stride-2 block doubles the CAM's resolution.

CheXtransfer counts EfficientNet/MNASNet blocks per MBConv stage (7); here they are counted per
stride stage (5), which keeps "one block less = twice the CAM resolution" true for every family.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from harness.models.architectures import ARCHITECTURES, CAM_TARGET_ATTR, register_architecture

#: Base architecture -> how many truncated variants (minus1 .. minusN) to register.
TRUNCATABLE: dict[str, int] = {
    **{f"resnet{d}": 3 for d in (18, 34, 50, 101, 152)},
    **{f"densenet{d}": 3 for d in (121, 169, 201)},
    **{f"efficientnet_b{i}": 3 for i in range(4)},
    "mnasnet_100": 3,
    "vgg16": 3,
    "vgg19": 3,
}


def block_ends(base: str) -> list[int]:
    """Indices into the base model's ``feature_info`` that end a block (see the module docstring)."""
    return list(_block_ends(base))


@lru_cache(maxsize=None)
def _block_ends(base: str) -> tuple[int, ...]:
    """Prune one meta-device probe tap by tap, deepest first, counting the parameters that remain."""
    with torch.device("meta"):
        probe = ARCHITECTURES.get(base)(224, 2)
    counts = []
    for index in reversed(range(len(probe.feature_info))):
        probe.prune_intermediate_layers(indices=[index], prune_norm=True, prune_head=True)
        counts.append(sum(p.numel() for p in probe.parameters()))
    counts.reverse()
    return tuple(i for i in range(len(counts)) if i == len(counts) - 1 or counts[i] != counts[i + 1])


def truncate(backbone: nn.Module, *, base: str, minus: int, num_classes: int) -> nn.Module:
    """Remove the last ``minus`` blocks of timm model ``backbone`` (built as ``base``), in place."""
    ends = block_ends(base)
    if not 1 <= minus < len(ends):
        raise ValueError(f"{base} has {len(ends)} blocks; cannot remove {minus}")
    keep = ends[-1 - minus]
    target = backbone.feature_info[keep]["module"]
    backbone.prune_intermediate_layers(indices=[keep], prune_norm=True, prune_head=True)
    # Older timm releases leave num_features at the full model's width after pruning: set it here.
    backbone.num_features = backbone.feature_info[keep]["num_chs"]
    if hasattr(backbone, "head_hidden_size"):
        backbone.head_hidden_size = backbone.num_features
    backbone.reset_classifier(num_classes, "avg")
    setattr(backbone, CAM_TARGET_ATTR, target)
    return backbone


def _register_truncated(base: str, minus: int) -> None:
    name = f"{base}_minus{minus}"
    description = (f"{base} minus its last {minus} block{'s' if minus > 1 else ''} (CheXtransfer truncation), "
                   "average-pooled linear head; CAM at the new last block")

    def build(img_size: int, num_classes: int) -> nn.Module:
        return truncate(ARCHITECTURES.get(base)(img_size, num_classes), base=base, minus=minus,
                        num_classes=num_classes)

    build.__doc__ = description
    base_meta = ARCHITECTURES.meta(base)
    register_architecture(name, description=description, family="cnn", source=base_meta.get("source", "timm"),
                          truncated_from=base, minus=minus, cpu_img_per_s=None, gpu_img_per_s=None)(build)


for _base, _n in TRUNCATABLE.items():
    for _minus in range(1, _n + 1):
        _register_truncated(_base, _minus)


def list_truncated() -> list[str]:
    """Registered truncated variants."""
    return [n for n in ARCHITECTURES.names() if "truncated_from" in ARCHITECTURES.meta(n)]


__all__ = ["TRUNCATABLE", "block_ends", "truncate", "list_truncated"]
