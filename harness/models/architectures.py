"""Architecture registry: single-channel classifiers with their Grad-CAM target layer.

Every architecture is built with random weights (``pretrained=False``; this project never downloads
weights, see ``pretrained.py`` for local files) and a single input channel, and wrapped in
:class:`ClassifierNet`, which owns the input normalisation (and optional CLAHE / z-score
preprocessing) and exposes the facts explainers need (target layer, ViT token reshape). Those facts
come from the libraries: timm's ``feature_info``, ``num_prefix_tokens`` and
``patch_embed.grid_size``, or the torchvision module path (``tv_models.py``), never from a
hand-kept table. Truncated variants (``resnet18_minus2``, ...) are registered in ``truncation.py``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Callable

import torch
from torch import nn

from harness.models.preprocess import Preprocess
from harness.registry import Registry

# timm only downloads with pretrained=True, which is never passed; this makes any stray attempt fail
# fast instead of hanging for a minute (ANCHORS.md).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

BackboneBuilder = Callable[[int, int], nn.Module]

ARCHITECTURES: Registry[BackboneBuilder] = Registry("architecture")
register_architecture = ARCHITECTURES.register

#: Images arrive in [0,1]; the network sees (x - 0.5) / 0.25 (no dataset statistics involved).
INPUT_MEAN = 0.5
INPUT_STD = 0.25

#: Attribute a builder sets on its backbone when the target layer is not timm's last feature stage
#: (torchvision models, truncated models): the dotted path inside the backbone.
CAM_TARGET_ATTR = "cam_target_layer"
#: The CAM target is the deepest feature stage whose map has at least this many cells per side at the
#: model's input size: 7, the 7x7 of the seed-000 protocol at 224 px (stride 32). At 64 px a stride-32
#: map is 2x2 and cannot resolve a ~8-pixel lesion; the rule then picks the stride-8 stage (8x8).
MIN_CAM_GRID = 7


class TokenGridReshape:
    """Maps ViT tokens ``[B,T,C]`` to a feature map ``[B,C,h,w]`` for Grad-CAM.

    Drops the ``num_prefix_tokens`` leading tokens (class token, register tokens) and lays the rest
    out on the patch grid ``grid_size``; both come from the timm model, so any image size, patch size
    or number of register tokens works (pytorch-grad-cam's example assumes one token and 14x14).
    """

    def __init__(self, num_prefix_tokens: int, grid_size: tuple[int, int]) -> None:
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.grid_size = (int(grid_size[0]), int(grid_size[1]))

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        h, w = self.grid_size
        patches = tokens[:, self.num_prefix_tokens :, :]
        if tokens.ndim != 3 or patches.shape[1] != h * w:
            raise ValueError(
                f"expected tokens [B,{self.num_prefix_tokens}+{h}*{w},C], got {tuple(tokens.shape)}"
            )
        return patches.reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"TokenGridReshape(num_prefix_tokens={self.num_prefix_tokens}, grid_size={self.grid_size})"


class ClassifierNet(nn.Module):
    """A registered architecture: float images ``[B,1,H,W]`` in [0,1] -> logits ``[B,num_classes]``.

    Binary models have 2 logits (softmax, class 1 = finding); multi-label models one logit per
    finding (sigmoid), in the order of ``finding_names``.

    Attributes:
        arch: registered architecture name.
        img_size: input side length the model was built for.
        num_classes: number of logits.
        multilabel: sigmoid outputs, one per finding (else 2-way softmax).
        finding_names: names of the findings (multi-label: one per logit).
        backbone: the timm / torchvision model.
        preprocess: the fixed input transform (``none``, ``clahe``, ``zscore``, ``clahe+zscore``).
        is_vit: whether the backbone is a token-based vision transformer.
        target_layer_name: dotted path (from this module) of the Grad-CAM target layer.
        reshape_transform: None for CNNs; for ViTs a :class:`TokenGridReshape`.
    """

    def __init__(self, backbone: nn.Module, *, arch: str, img_size: int, num_classes: int,
                 target_layer: str | None = None, preprocess: str = "none", multilabel: bool = False,
                 finding_names: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.arch = arch
        self.img_size = int(img_size)
        self.num_classes = int(num_classes)
        self.multilabel = bool(multilabel)
        self.finding_names = tuple(finding_names)
        self.backbone = backbone
        self.preprocess = Preprocess(preprocess)  # no parameters or buffers: not in the state dict
        # Fixed, not learned, not saved: checkpoints hold the backbone's state only.
        self.register_buffer("input_mean", torch.tensor(INPUT_MEAN), persistent=False)
        self.register_buffer("input_std", torch.tensor(INPUT_STD), persistent=False)
        self.is_vit = is_token_model(backbone)
        self.target_layer_name = "backbone." + (target_layer or target_layer_path(backbone, self.img_size))
        self.reshape_transform: TokenGridReshape | None = None
        if self.is_vit:
            self.reshape_transform = TokenGridReshape(
                backbone.num_prefix_tokens, tuple(backbone.patch_embed.grid_size)
            )

    @property
    def target_layer(self) -> nn.Module:
        """The module whose output Grad-CAM uses (a property, so it is not a second submodule)."""
        return self.get_submodule(self.target_layer_name)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.preprocess.standardises:
            return self.backbone(self.preprocess(images))
        return self.backbone((self.preprocess(images) - self.input_mean) / self.input_std)

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, img_size={self.img_size}, num_classes={self.num_classes}, "
                f"multilabel={self.multilabel}")


def is_token_model(backbone: nn.Module) -> bool:
    """A timm vision transformer: patch embedding, a block list and prefix tokens."""
    return all(hasattr(backbone, a) for a in ("patch_embed", "blocks", "num_prefix_tokens"))


def target_layer_path(backbone: nn.Module, img_size: int | None = None) -> str:
    """Dotted path, inside ``backbone``, of the Grad-CAM target layer, derived from the library.

    CNNs: timm's ``feature_info`` stages, up to the declared ``cam_target_layer`` where a builder set
    one (truncated models: their new last block) and otherwise to the last (stride-32) stage:
    ``layer4`` (ResNet), ``features.norm5`` (DenseNet), ``blocks.6`` (EfficientNet, MobileNet,
    MNASNet), ``Mixed_7c`` (Inception-v3), ``features.30`` (VGG's final max-pool, pytorch-grad-cam's
    ``model.features[-1]``). Of these, the deepest whose map has at least :data:`MIN_CAM_GRID`
    cells per side at ``img_size`` is the target: the last stage at 224 px, the stride-8 stage at
    64 px (``layer2`` of a ResNet: 8x8 instead of 2x2). Without ``img_size``, the last. Models without
    ``feature_info`` (torchvision) use their declared layer (``layer4`` / ``features[-1]``). ViTs:
    the last block's ``norm1``, as pytorch-grad-cam's ViT tutorial does (the tokens before the final
    attention, as the seed-000 study describes); their grid is the patch grid at any depth.
    """
    declared = getattr(backbone, CAM_TARGET_ATTR, None)
    if is_token_model(backbone):
        return declared or f"blocks.{len(backbone.blocks) - 1}.norm1"
    info = getattr(backbone, "feature_info", None)
    if not info:
        if declared:
            backbone.get_submodule(declared)
            return declared
        raise ValueError(f"{type(backbone).__name__} has no timm feature_info to derive a target layer")
    taps = [(tap["module"], int(tap["reduction"])) for tap in info]
    modules = [module for module, _ in taps]
    if declared:
        if declared not in modules:
            backbone.get_submodule(declared)
            return declared
        taps = taps[: modules.index(declared) + 1]
    path = taps[-1][0]
    if img_size:
        fine = [module for module, reduction in taps if img_size // reduction >= MIN_CAM_GRID]
        path = fine[-1] if fine else taps[0][0]
    backbone.get_submodule(path)  # fail here, not in an explainer, if timm's path is stale
    return path


def cam_grid(model: nn.Module) -> tuple[int, int] | None:
    """Cells per side of a ClassifierNet's CAM at its input size (None if it cannot be told cheaply)."""
    import torch

    try:
        with torch.no_grad():
            layer, captured = model.target_layer, []
            handle = layer.register_forward_hook(lambda m, i, o: captured.append(o))
            try:
                model.eval()(torch.zeros(1, 1, model.img_size, model.img_size, device=next(model.parameters()).device))
            finally:
                handle.remove()
        out = captured[0]
        if getattr(model, "reshape_transform", None) is not None:
            out = model.reshape_transform(out)
        return int(out.shape[-2]), int(out.shape[-1])
    except Exception:  # noqa: BLE001  (a report detail, never a failure)
        return None


def create_model(arch: str, *, img_size: int, num_classes: int = 2, preprocess: str = "none",
                 multilabel: bool = False, finding_names: tuple[str, ...] = ()) -> ClassifierNet:
    """Build registered architecture ``arch`` (random init) for ``img_size`` single-channel images.

    Raises:
        UnknownNameError: ``arch`` is not registered.
        ValueError: ``img_size`` is below the architecture's minimum (Inception: 75).
    """
    builder = ARCHITECTURES.get(arch)
    minimum = ARCHITECTURES.meta(arch).get("min_img_size", 1)
    if img_size < minimum:
        raise ValueError(f"architecture {arch!r} needs img_size >= {minimum}, got {img_size}")
    return ClassifierNet(builder(img_size, num_classes), arch=arch, img_size=img_size, num_classes=num_classes,
                         preprocess=preprocess, multilabel=multilabel, finding_names=finding_names)


def list_architectures() -> list[str]:
    return ARCHITECTURES.names()


def get_architecture_meta(arch: str) -> dict:
    """Registered metadata: ``description``, ``family``, measured ``cpu_img_per_s``/``gpu_img_per_s``
    (PERF.md), optional ``min_img_size``, ``compile`` (torch.compile pays on a GPU), ``source``
    (timm / torchvision) and, for truncated variants, ``truncated_from`` and ``minus``."""
    return ARCHITECTURES.meta(arch)


@lru_cache(maxsize=None)
def parameter_count(arch: str, *, num_classes: int = 2, img_size: int = 224) -> int:
    """Number of parameters of ``arch`` (built on the meta device: no memory, no init cost)."""
    size = max(img_size, ARCHITECTURES.meta(arch).get("min_img_size", 1))
    with torch.device("meta"):
        model = create_model(arch, img_size=size, num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())


def times_smaller(arch: str, *, num_classes: int = 2, base_num_classes: int | None = None) -> float | None:
    """CheXtransfer's "times smaller" of a truncated variant: parameters of the full architecture
    (with a ``base_num_classes``-way head, default ``num_classes``) divided by the variant's (with a
    ``num_classes``-way head); None for architectures that are not truncated variants.

    Reading of the paper (Ke et al., CHIL 2021, Tables 1-2): the numerator is the full model's count
    as its Table 1 lists it, the denominator the truncated model with its appended 14-way CheXpert
    head. Table 1 counts DenseNet121 (6.968M) and EfficientNetB0 (4.025M) with the 14-way head but
    ResNet18 (11.690M) with its 1000-way ImageNet head, so ``times_smaller("resnet18_minus1",
    num_classes=14, base_num_classes=1000)`` gives the table's 4.2x (same heads, 14 or 2 classes: 4.0x).
    Its MNASNet (5.290M) matches no MNASNet build (timm/torchvision MNASNet-1.0: 4.383M with 1000
    classes, 3.120M with 14), while its truncated MNASNet sizes (5.290M / Table 2) match ours within 1%.
    The default (same small head on both sides) is the honest ratio for this harness's models.
    """
    base = ARCHITECTURES.meta(arch).get("truncated_from")
    if base is None:
        return None
    base_classes = num_classes if base_num_classes is None else base_num_classes
    return parameter_count(base, num_classes=base_classes) / parameter_count(arch, num_classes=num_classes)


def _timm(name: str, num_classes: int, **kwargs) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, in_chans=1, num_classes=num_classes, **kwargs)


def _register_timm(name: str, *, description: str, family: str, cpu_img_per_s: float | None = None,
                   gpu_img_per_s: float | None = None, **meta) -> None:
    """Register timm model ``name`` as is (ViTs get ``img_size`` passed through)."""
    def build(img_size: int, num_classes: int) -> nn.Module:
        return _timm(name, num_classes, **({"img_size": img_size} if family == "vit" else {}))

    build.__doc__ = description
    register_architecture(name, description=description, family=family, source="timm",
                          cpu_img_per_s=cpu_img_per_s, gpu_img_per_s=gpu_img_per_s, **meta)(build)


# Throughputs are PERF.md's training figures (CPU: 64x64 fp32 batch 32, 2 cores; GPU: H100 224x224
# bf16 + channels_last batch 128); they only feed "about N s" messages, never behaviour. Not in PERF.md
# (CPU of resnet34/101, vgg19, vit_base): measured beside resnet18 on the same CPU and scaled to its
# PERF.md figure; None = not measured. ``compile=True`` marks where PERF.md measured torch.compile
# paying off on the GPU (resnet50, vgg16, ViTs); it is used on CUDA only.
_CNN, _VIT = "cnn", "vit"
_register_timm("resnet18", description="ResNet-18 (timm)", family=_CNN, cpu_img_per_s=93, gpu_img_per_s=9429)
_register_timm("resnet34", description="ResNet-34 (timm)", family=_CNN, cpu_img_per_s=53)
_register_timm("resnet50", description="ResNet-50 (timm)", family=_CNN, cpu_img_per_s=44, gpu_img_per_s=3680,
               compile=True)
_register_timm("resnet101", description="ResNet-101 (timm)", family=_CNN, cpu_img_per_s=10, gpu_img_per_s=2070)
_register_timm("resnet152", description="ResNet-152 (timm)", family=_CNN)
_register_timm("densenet121", description="DenseNet-121 (timm)", family=_CNN, cpu_img_per_s=58,
               gpu_img_per_s=1862)
_register_timm("densenet169", description="DenseNet-169 (timm)", family=_CNN)
_register_timm("densenet201", description="DenseNet-201 (timm)", family=_CNN)
_register_timm("efficientnet_b0", description="EfficientNet-B0 (timm)", family=_CNN, cpu_img_per_s=93,
               gpu_img_per_s=2964)
_register_timm("efficientnet_b1", description="EfficientNet-B1 (timm)", family=_CNN)
_register_timm("efficientnet_b2", description="EfficientNet-B2 (timm)", family=_CNN)
_register_timm("efficientnet_b3", description="EfficientNet-B3 (timm)", family=_CNN)
_register_timm("inception_v3", description="Inception-v3 (timm); needs img_size >= 75", family=_CNN,
               min_img_size=75)
_register_timm("inception_v4", description="Inception-v4 (timm); needs img_size >= 75", family=_CNN,
               min_img_size=75)
_register_timm("mnasnet_100", description="MNASNet-A1 1.0 (timm)", family=_CNN)
_register_timm("mobilenetv2_100", description="MobileNet-V2 1.0 (timm)", family=_CNN)
_register_timm("mobilenetv3_large_100", description="MobileNet-V3 large 1.0 (timm)", family=_CNN)
_register_timm("vit_small_patch16_224", description="ViT-S/16 (timm), img_size passed through", family=_VIT,
               cpu_img_per_s=49, gpu_img_per_s=3857, compile=True)
_register_timm("vit_base_patch16_224", description="ViT-B/16 (timm), img_size passed through", family=_VIT,
               cpu_img_per_s=14, gpu_img_per_s=2435, compile=True)
_register_timm("vit_large_patch16_224", description="ViT-L/16 (timm), img_size passed through", family=_VIT,
               gpu_img_per_s=879, compile=True)

# timm's own tiny test networks (0.3M parameters): real feature_info / token grids, milliseconds per
# step, for fast tests of this and later stages. Not meant for results.
_register_timm("test_resnet", description="tiny timm test ResNet (for fast tests)", family=_CNN)
_register_timm("test_vit", description="tiny timm test ViT (for fast tests)", family=_VIT)


def _pooled_vgg(name: str, num_classes: int) -> nn.Module:
    """timm VGG with its ConvMlp pre-logits replaced by global average pooling + one linear layer.

    timm's VGG head is a 7x7 conv (512->4096) + 1x1 conv (4096->4096) "ConvMlp": 120M of the 134M
    parameters, built for 224x224 (at 64x64 the 2x2 feature map is up-sampled to 7x7 to feed it).
    On the 2-core CPU it trains at 6.5 img/s vs 19.6 img/s with a pooled head (PERF.md), and a
    pooled head leaves the convolutional trunk, and so the Grad-CAM target layer, unchanged.
    """
    from timm.layers import ClassifierHead

    # mlp_ratio=1/4096 builds the discarded ConvMlp 1 channel wide: 2.2 s -> ~0.1 s per model.
    # (Initial weights are still a pure function of the seed, not equal to plain timm's.)
    model = _timm(name, num_classes, mlp_ratio=1 / 4096)
    model.pre_logits = nn.Identity()
    model.head_hidden_size = model.num_features
    model.head = ClassifierHead(model.num_features, num_classes, pool_type="avg", drop_rate=model.drop_rate)
    nn.init.normal_(model.head.fc.weight, 0, 0.01)  # timm's VGG init for linear layers
    nn.init.zeros_(model.head.fc.bias)
    return model


@register_architecture(
    "vgg16", description="VGG-16 (timm trunk, pooled linear head)", family="cnn", source="timm",
    cpu_img_per_s=19.6, gpu_img_per_s=2980, compile=True,
)
def vgg16(img_size: int, num_classes: int) -> nn.Module:
    """VGG-16 with a pooled head (see ``_pooled_vgg`` for why)."""
    return _pooled_vgg("vgg16", num_classes)


@register_architecture(
    "vgg19", description="VGG-19 (timm trunk, pooled linear head)", family="cnn", source="timm", cpu_img_per_s=9,
    gpu_img_per_s=None,
)
def vgg19(img_size: int, num_classes: int) -> nn.Module:
    """VGG-19 with a pooled head (see ``_pooled_vgg`` for why)."""
    return _pooled_vgg("vgg19", num_classes)


# Torchvision-built models and truncated variants register themselves on import (they need the
# registry and helpers above, hence the import at the bottom).
from harness.models import convstem, truncation, tv_models  # noqa: E402,F401

__all__ = [
    "ARCHITECTURES",
    "register_architecture",
    "ClassifierNet",
    "TokenGridReshape",
    "create_model",
    "list_architectures",
    "get_architecture_meta",
    "parameter_count",
    "times_smaller",
    "target_layer_path",
    "CAM_TARGET_ATTR",
    "INPUT_MEAN",
    "INPUT_STD",
]
