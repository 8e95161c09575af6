"""Truncated architectures (seed 004, CheXtransfer): the final blocks removed, pooled linear head.

What a *block* is follows CheXtransfer (Ke et al., CHIL 2021, section 3.2) family by family:

- ResNet: a residual stage ``layerN``; DenseNet: a dense block with its transition block. Both are
  timm feature stages (``feature_info`` taps). VGG (not in the paper) likewise: a conv block, and
  taps that no parameter separates (its final max-pool after the last ReLU) belong to the same block.
- EfficientNet and MNASNet (timm's ``EfficientNet`` class): one MBConv stage, i.e. one entry of
  ``backbone.blocks`` (a run of repeated MBConv blocks of one width). The paper's "remove the final
  MBConv blocks" can only mean these stages: its Table 2 sizes are reproduced by removing
  ``blocks.6``, ``blocks.5``, ... one at a time (with ``conv_head``), not by removing single MBConv
  blocks nor by removing stride stages (the feature taps, which would make EfficientNetB0Minus1
  4.7x smaller where the paper has 1.4x). Consequence: removing a stage that keeps the stride
  (EfficientNet-B0 ``blocks.6``) does not raise the CAM's resolution.

Truncation uses timm's own ``prune_intermediate_layers`` and then ``reset_classifier(num_classes,
"avg")`` (global average pooling + one linear layer, the paper's appended classification block); the
Grad-CAM target becomes the new last block (for the MBConv families a feature tap is added for it).
See :func:`harness.models.architectures.times_smaller` for how the paper counts "times smaller".
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from harness.models.architectures import ARCHITECTURES, CAM_TARGET_ATTR, register_architecture

#: Base architecture -> how many truncated variants (minus1 .. minusN) to register (CheXtransfer
#: Table 2: MNASNet minus1-4, DenseNet121 and ResNet18 minus1-3, EfficientNetB0 minus1-2).
TRUNCATABLE: dict[str, int] = {
    **{f"resnet{d}": 3 for d in (18, 34, 50, 101, 152)},
    **{f"densenet{d}": 3 for d in (121, 169, 201)},
    **{f"efficientnet_b{i}": 3 for i in range(4)},
    "mnasnet_100": 4,
    "vgg16": 3,
    "vgg19": 3,
}


def counts_mbconv_stages(backbone: nn.Module) -> bool:
    """Whether ``backbone``'s blocks are MBConv stages (timm's EfficientNet class: EfficientNet, MNASNet)."""
    return hasattr(backbone, "stage_ends") and isinstance(getattr(backbone, "blocks", None), nn.Sequential)


def block_ends(base: str) -> list[int]:
    """Indices into the base model's ``feature_info`` that end a block (feature-stage families only).

    Raises:
        ValueError: ``base`` counts MBConv stages (see the module docstring), not feature taps.
    """
    return list(_block_ends(base))


def block_count(base: str) -> int:
    """How many blocks ``base`` has in the sense of the module docstring (ResNet-18: 4 + stem, B0: 7)."""
    with torch.device("meta"):
        probe = ARCHITECTURES.get(base)(224, 2)
    return len(probe.blocks) if counts_mbconv_stages(probe) else len(_block_ends(base))


@lru_cache(maxsize=None)
def _block_ends(base: str) -> tuple[int, ...]:
    """Prune one meta-device probe tap by tap, deepest first, counting the parameters that remain."""
    with torch.device("meta"):
        probe = ARCHITECTURES.get(base)(224, 2)
    if counts_mbconv_stages(probe):
        raise ValueError(f"{base} counts MBConv stages (backbone.blocks), not feature taps: use block_count")
    counts = []
    for index in reversed(range(len(probe.feature_info))):
        probe.prune_intermediate_layers(indices=[index], prune_norm=True, prune_head=True)
        counts.append(sum(p.numel() for p in probe.parameters()))
    counts.reverse()
    return tuple(i for i in range(len(counts)) if i == len(counts) - 1 or counts[i] != counts[i + 1])


def truncate(backbone: nn.Module, *, base: str, minus: int, num_classes: int) -> nn.Module:
    """Remove the last ``minus`` blocks of timm model ``backbone`` (built as ``base``), in place.

    Raises:
        ValueError: ``minus`` is not in 1 .. (number of blocks - 1).
    """
    if counts_mbconv_stages(backbone):
        target = _truncate_mbconv_stages(backbone, base=base, minus=minus)
    else:
        target = _truncate_feature_stages(backbone, base=base, minus=minus)
    if hasattr(backbone, "head_hidden_size"):
        backbone.head_hidden_size = backbone.num_features
    backbone.reset_classifier(num_classes, "avg")
    setattr(backbone, CAM_TARGET_ATTR, target)
    return backbone


def _check_minus(base: str, minus: int, blocks: int) -> None:
    if not 1 <= minus < blocks:
        raise ValueError(f"{base} has {blocks} blocks; cannot remove {minus} (use minus 1..{blocks - 1})")


def _truncate_feature_stages(backbone: nn.Module, *, base: str, minus: int) -> str:
    """ResNet / DenseNet / VGG: keep the feature taps up to the end of block ``-1 - minus``."""
    ends = block_ends(base)
    _check_minus(base, minus, len(ends))
    keep = ends[-1 - minus]
    backbone.prune_intermediate_layers(indices=[keep], prune_norm=True, prune_head=True)
    # Older timm releases leave num_features at the full model's width after pruning: set it here.
    backbone.num_features = backbone.feature_info[keep]["num_chs"]
    return backbone.feature_info[keep]["module"]


def _truncate_mbconv_stages(backbone: nn.Module, *, base: str, minus: int) -> str:
    """EfficientNet / MNASNet: keep ``blocks[:n - minus]``; drop ``conv_head``/``bn2``; add a tap for the cut."""
    stages = len(backbone.blocks)
    _check_minus(base, minus, stages)
    keep = stages - minus
    info = [dict(tap) for tap in backbone.feature_info]
    # A stage between two taps has the stride of the next tap (taps sit where the stride changes).
    reduction = next(tap["reduction"] for tap in info if tap["stage"] >= keep)
    backbone.prune_intermediate_layers(indices=[keep], prune_norm=True, prune_head=True, extra_blocks=True)
    last = backbone.blocks[keep - 1][-1]
    backbone.num_features = last.feature_info("bottleneck")["num_chs"]
    target = f"blocks.{keep - 1}"
    kept = [tap for tap in info if tap["stage"] < keep]
    backbone.feature_info = kept + [{"module": target, "num_chs": backbone.num_features, "reduction": reduction,
                                     "stage": keep}]
    backbone.stage_ends = [tap["stage"] for tap in backbone.feature_info]
    return target


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


__all__ = ["TRUNCATABLE", "block_count", "block_ends", "counts_mbconv_stages", "truncate", "list_truncated"]
