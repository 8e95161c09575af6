"""Architecture registry over timm: single-channel classifiers with their Grad-CAM target layer.

Every architecture is a timm model built with ``pretrained=False`` (this project never downloads
weights) and ``in_chans=1``, wrapped in :class:`ClassifierNet`, which owns the fixed input
normalisation and exposes the facts explainers need (target layer, ViT token reshape). Those facts
are read from timm's own attributes (``feature_info``, ``num_prefix_tokens``,
``patch_embed.grid_size``), never from a hand-kept table.
"""

from __future__ import annotations

import os
from typing import Callable

import torch
from torch import nn

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

    Attributes:
        arch: registered architecture name (the timm name).
        img_size: input side length the model was built for.
        num_classes: number of logits.
        backbone: the timm model.
        is_vit: whether the backbone is a token-based vision transformer.
        target_layer_name: dotted path (from this module) of the Grad-CAM target layer.
        reshape_transform: None for CNNs; for ViTs a :class:`TokenGridReshape`.
    """

    def __init__(self, backbone: nn.Module, *, arch: str, img_size: int, num_classes: int) -> None:
        super().__init__()
        self.arch = arch
        self.img_size = int(img_size)
        self.num_classes = int(num_classes)
        self.backbone = backbone
        # Fixed, not learned, not saved: checkpoints hold the backbone's state only.
        self.register_buffer("input_mean", torch.tensor(INPUT_MEAN), persistent=False)
        self.register_buffer("input_std", torch.tensor(INPUT_STD), persistent=False)
        self.is_vit = is_token_model(backbone)
        self.target_layer_name = "backbone." + target_layer_path(backbone)
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
        return self.backbone((images - self.input_mean) / self.input_std)

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, img_size={self.img_size}, num_classes={self.num_classes}"


def is_token_model(backbone: nn.Module) -> bool:
    """A timm vision transformer: patch embedding, a block list and prefix tokens."""
    return all(hasattr(backbone, a) for a in ("patch_embed", "blocks", "num_prefix_tokens"))


def target_layer_path(backbone: nn.Module) -> str:
    """Dotted path, inside ``backbone``, of the Grad-CAM target layer, derived from timm.

    CNNs: ``feature_info[-1]["module"]``, the last (stride-32) feature stage timm reports:
    ``layer4`` (ResNet), ``features.norm5`` (DenseNet), ``blocks.6`` (EfficientNet) and
    ``features.30`` (VGG's final max-pool over the last conv block, the layer pytorch-grad-cam
    recommends as ``model.features[-1]``). ViTs: the last block's ``norm1``, as pytorch-grad-cam's
    ViT tutorial does (the tokens before the final attention, as the seed-000 study describes).
    """
    if is_token_model(backbone):
        return f"blocks.{len(backbone.blocks) - 1}.norm1"
    info = getattr(backbone, "feature_info", None)
    if not info:
        raise ValueError(f"{type(backbone).__name__} has no timm feature_info to derive a target layer")
    path = info[-1]["module"]
    backbone.get_submodule(path)  # fail here, not in an explainer, if timm's path is stale
    return path


def create_model(arch: str, *, img_size: int, num_classes: int = 2) -> ClassifierNet:
    """Build registered architecture ``arch`` (random init) for ``img_size`` single-channel images."""
    builder = ARCHITECTURES.get(arch)
    return ClassifierNet(builder(img_size, num_classes), arch=arch, img_size=img_size, num_classes=num_classes)


def list_architectures() -> list[str]:
    return ARCHITECTURES.names()


def get_architecture_meta(arch: str) -> dict:
    """Registered metadata: ``description``, ``family`` and measured ``cpu_img_per_s`` (PERF.md)."""
    return ARCHITECTURES.meta(arch)


def _timm(name: str, num_classes: int, **kwargs) -> nn.Module:
    import timm

    return timm.create_model(name, pretrained=False, in_chans=1, num_classes=num_classes, **kwargs)


def _register_timm_cnn(
    name: str, *, description: str, cpu_img_per_s: float | None, gpu_img_per_s: float | None
) -> None:
    def build(img_size: int, num_classes: int) -> nn.Module:
        return _timm(name, num_classes)

    build.__doc__ = description
    register_architecture(
        name, description=description, family="cnn", cpu_img_per_s=cpu_img_per_s, gpu_img_per_s=gpu_img_per_s
    )(build)


def _register_timm_vit(
    name: str, *, description: str, cpu_img_per_s: float | None, gpu_img_per_s: float | None
) -> None:
    def build(img_size: int, num_classes: int) -> nn.Module:
        return _timm(name, num_classes, img_size=img_size)

    build.__doc__ = description
    register_architecture(
        name, description=description, family="vit", cpu_img_per_s=cpu_img_per_s, gpu_img_per_s=gpu_img_per_s
    )(build)


# Throughputs are PERF.md's training figures (CPU: 64x64 fp32 batch 32, 2 cores; GPU: H100 224x224
# bf16 + channels_last batch 128); they only feed "about N s" messages, never behaviour. Not in PERF.md
# (CPU of resnet34/101, vgg19, vit_base): measured beside resnet18 on the same CPU and scaled to its
# PERF.md figure; None = not measured.
_register_timm_cnn("resnet18", description="ResNet-18 (timm)", cpu_img_per_s=93, gpu_img_per_s=9429)
_register_timm_cnn("resnet34", description="ResNet-34 (timm)", cpu_img_per_s=53, gpu_img_per_s=None)
_register_timm_cnn("resnet50", description="ResNet-50 (timm)", cpu_img_per_s=44, gpu_img_per_s=3680)
_register_timm_cnn("resnet101", description="ResNet-101 (timm)", cpu_img_per_s=10, gpu_img_per_s=2070)
_register_timm_cnn("densenet121", description="DenseNet-121 (timm)", cpu_img_per_s=58, gpu_img_per_s=1862)
_register_timm_cnn(
    "efficientnet_b0", description="EfficientNet-B0 (timm)", cpu_img_per_s=93, gpu_img_per_s=2964
)
_register_timm_vit(
    "vit_small_patch16_224", description="ViT-S/16 (timm), img_size passed through", cpu_img_per_s=49,
    gpu_img_per_s=3857,
)
_register_timm_vit(
    "vit_base_patch16_224", description="ViT-B/16 (timm), img_size passed through", cpu_img_per_s=14,
    gpu_img_per_s=2435,
)

# timm's own tiny test networks (0.3M parameters): real feature_info / token grids, milliseconds per
# step, for fast tests of this and later stages. Not meant for results.
_register_timm_cnn("test_resnet", description="tiny timm test ResNet (for fast tests)", cpu_img_per_s=None,
                   gpu_img_per_s=None)
_register_timm_vit("test_vit", description="tiny timm test ViT (for fast tests)", cpu_img_per_s=None,
                   gpu_img_per_s=None)


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
    "vgg16", description="VGG-16 (timm trunk, pooled linear head)", family="cnn", cpu_img_per_s=19.6,
    gpu_img_per_s=2980,
)
def vgg16(img_size: int, num_classes: int) -> nn.Module:
    """VGG-16 with a pooled head (see ``_pooled_vgg`` for why)."""
    return _pooled_vgg("vgg16", num_classes)


@register_architecture(
    "vgg19", description="VGG-19 (timm trunk, pooled linear head)", family="cnn", cpu_img_per_s=9,
    gpu_img_per_s=None,
)
def vgg19(img_size: int, num_classes: int) -> nn.Module:
    """VGG-19 with a pooled head (see ``_pooled_vgg`` for why)."""
    return _pooled_vgg("vgg19", num_classes)


__all__ = [
    "ARCHITECTURES",
    "register_architecture",
    "ClassifierNet",
    "TokenGridReshape",
    "create_model",
    "list_architectures",
    "get_architecture_meta",
    "target_layer_path",
    "INPUT_MEAN",
    "INPUT_STD",
]
