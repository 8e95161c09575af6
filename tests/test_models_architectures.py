"""Architecture registry: every architecture builds, forwards, and exposes a usable CAM target layer.

Every registered architecture is checked on the meta device (shapes only, no memory, milliseconds);
a few small ones also run a real forward + backward to their CAM layer on the CPU.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision

from harness.models.architectures import (
    ARCHITECTURES,
    MIN_CAM_GRID,
    ClassifierNet,
    TokenGridReshape,
    create_model,
    get_architecture_meta,
    list_architectures,
    parameter_count,
    target_layer_path,
    times_smaller,
)
from harness.models.truncation import TRUNCATABLE, block_ends, list_truncated
from harness.registry import UnknownNameError

pytestmark = pytest.mark.usefixtures("one_thread")

# Every architecture of the five seed studies (SEEDS.md), by registered name.
REQUIRED = ["vgg16", "vgg19", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
            "vit_small_patch16_224", "vit_base_patch16_224", "vit_large_patch16_224", "densenet121", "densenet169",
            "densenet201", "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
            "inception_v3", "inception_v4", "mnasnet_100", "mobilenetv2_100", "mobilenetv3_large_100", "alexnet",
            "tv_resnet18", "tv_resnet50", "tv_vgg16"]
TORCHVISION = {"alexnet": "features.12", "tv_resnet18": "layer4", "tv_resnet50": "layer4", "tv_vgg16": "features.30"}
ALL = list_architectures()


def meta_size(arch: str) -> int:
    return max(64, get_architecture_meta(arch).get("min_img_size", 1))


def target_output(model: ClassifierNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    captured = {}
    handle = model.target_layer.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    try:
        logits = model(images)
    finally:
        handle.remove()
    out = captured["out"]
    return logits, (model.reshape_transform(out) if model.reshape_transform else out)


def test_required_architectures_are_registered():
    assert set(REQUIRED) <= set(ALL)
    for arch in REQUIRED:
        source = get_architecture_meta(arch)["source"]
        assert source == ("torchvision" if arch in TORCHVISION else "timm")
        if source == "timm":
            assert arch in timm.list_models(arch)
    assert len(ALL) == len(set(ALL)) >= 70


@pytest.mark.parametrize("arch", ALL)
def test_every_architecture_on_meta(arch):
    """Builds, gives [B,num_classes], and its target layer yields a 4-D map (after the ViT reshape)."""
    size = meta_size(arch)
    with torch.device("meta"):
        model = create_model(arch, img_size=size, num_classes=3).eval()
        logits, feature_map = target_output(model, torch.empty(2, 1, size, size))
    assert (model.arch, model.img_size, model.num_classes) == (arch, size, 3)
    assert logits.shape == (2, 3)
    assert feature_map.ndim == 4 and feature_map.shape[0] == 2 and min(feature_map.shape[2:]) >= 1
    assert model.target_layer is model.get_submodule(model.target_layer_name)
    assert model.target_layer_name == "backbone." + target_layer_path(model.backbone, size)
    assert all(k.startswith("backbone.") for k in model.state_dict())  # the target layer is not a 2nd copy
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1
    meta = get_architecture_meta(arch)
    assert model.is_vit == (meta["family"] == "vit")
    if model.is_vit:
        assert model.target_layer is model.backbone.blocks[-1].norm1
        assert tuple(feature_map.shape[2:]) == model.reshape_transform.grid_size == \
            tuple(model.backbone.patch_embed.grid_size)
    elif meta["source"] == "timm" and "truncated_from" not in meta:  # timm's deepest stage with >= 7x7 cells
        assert model.reshape_transform is None
        fine = [t["module"] for t in model.backbone.feature_info if size // t["reduction"] >= MIN_CAM_GRID]
        assert model.target_layer is model.backbone.get_submodule(fine[-1])
        assert min(feature_map.shape[2:]) >= MIN_CAM_GRID


@pytest.mark.parametrize("arch,path", sorted(TORCHVISION.items()))
def test_torchvision_models_keep_torchvision_structure(arch, path):
    """zennit's canonizers recognise torchvision classes: the backbone must stay one."""
    with torch.device("meta"):
        model = create_model(arch, img_size=64)
    expected = torchvision.models.ResNet if "resnet" in arch else (
        torchvision.models.VGG if "vgg" in arch else torchvision.models.AlexNet)
    assert type(model.backbone) is expected
    assert model.target_layer_name == f"backbone.{path}"
    assert model.reshape_transform is None


@pytest.mark.parametrize("arch", ["resnet18", "test_vit", "tv_resnet18", "alexnet", "resnet18_minus2",
                                  "efficientnet_b0_minus1", "vgg16_minus2"])
def test_forward_and_cam_layer_gradient_on_cpu(arch):
    """A real forward at 64x64, and the gradient of a logit reaches the CAM layer (Grad-CAM's input)."""
    torch.manual_seed(0)
    model = create_model(arch, img_size=64).eval()
    captured = {}
    handle = model.target_layer.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    try:
        logits = model(torch.rand(2, 1, 64, 64))
    finally:
        handle.remove()
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), captured["out"])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_cam_target_is_the_deepest_stage_with_a_7x7_map():
    """At 224 px the seed-000 protocol's last stage (7x7); at 64 px its 2x2 map cannot resolve a
    lesion, so the stride-8 stage (8x8) is the target; a truncated model's stages end at its new last block."""
    with torch.device("meta"):
        at224 = create_model("resnet18", img_size=224)
        at64 = create_model("resnet18", img_size=64)
        short = create_model("resnet18_minus2", img_size=64)
        minus3 = create_model("resnet18_minus3", img_size=64)
        grids = [tuple(target_output(m, torch.empty(1, 1, m.img_size, m.img_size))[1].shape[2:])
                 for m in (at224, at64, short, minus3)]
    assert at224.target_layer_name == "backbone.layer4" and grids[0] == (7, 7)
    assert at64.target_layer_name == "backbone.layer2" and grids[1] == (8, 8)
    assert short.target_layer_name == "backbone.layer2" and grids[2] == (8, 8)
    assert minus3.target_layer_name == "backbone.layer1" and grids[3] == (16, 16)


def test_truncated_resnet18_minus2_has_the_expected_size():
    """CheXtransfer: truncating two blocks leaves the stem, layer1, layer2 and a pooled linear head."""
    with torch.device("meta"):
        full = create_model("resnet18", img_size=64)
        short = create_model("resnet18_minus2", img_size=64)

    def n(module):
        return sum(p.numel() for p in module.parameters())

    kept = n(full.backbone.conv1) + n(full.backbone.bn1) + n(full.backbone.layer1) + n(full.backbone.layer2)
    expected = kept + 128 * 2 + 2  # pooled linear head on 128 channels
    assert n(short) == parameter_count("resnet18_minus2") == expected
    assert times_smaller("resnet18_minus2") == pytest.approx(n(full) / expected)
    assert 16 < times_smaller("resnet18_minus2") < 17  # CheXtransfer Table 2: 17.1x with 1000 classes


def test_truncated_variants_and_times_smaller():
    names = list_truncated()
    assert len(names) == sum(TRUNCATABLE.values())
    for base in ("densenet121", "resnet18", "efficientnet_b0", "vgg16", "mnasnet_100"):
        ratios = [times_smaller(f"{base}_minus{k}") for k in (1, 2, 3)]
        assert 1 < ratios[0] < ratios[1] < ratios[2], base
    assert times_smaller("resnet18") is None
    # CheXtransfer Table 2 (1000 ImageNet classes there, 2 here): DenseNet121Minus1-3 1.6x/5.3x/20.0x
    assert [round(times_smaller(f"densenet121_minus{k}"), 1) for k in (1, 2, 3)] == [1.6, 5.4, 20.5]
    assert get_architecture_meta("densenet121_minus1")["truncated_from"] == "densenet121"


def test_vgg_final_pool_is_not_a_block():
    """VGG's last feature tap (the final max-pool) adds no parameters: it belongs to block 5."""
    assert block_ends("vgg16") == [0, 1, 2, 3, 5]
    assert block_ends("resnet18") == [0, 1, 2, 3, 4]
    with torch.device("meta"):
        assert create_model("vgg16_minus1", img_size=64).target_layer_name == "backbone.features.22"


def test_inception_needs_75_pixels():
    """The minimum size is a fact of the network: at 75 it forwards, at 74 it cannot."""
    with pytest.raises(ValueError, match="needs img_size >= 75"):
        create_model("inception_v3", img_size=64)
    with torch.device("meta"):
        model = timm.create_model("inception_v3", pretrained=False, in_chans=1, num_classes=2).eval()
        assert model(torch.empty(1, 1, 75, 75)).shape == (1, 2)
        with pytest.raises(RuntimeError):
            model(torch.empty(1, 1, 74, 74))


def test_normalisation_is_fixed_and_not_saved():
    model = create_model("test_resnet", img_size=32).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone((x - 0.5) / 0.25))
    assert "input_mean" not in model.state_dict()


def test_vgg16_uses_a_pooled_head():
    model = create_model("vgg16", img_size=64)
    assert sum(p.numel() for p in model.parameters()) < 20_000_000  # timm's ConvMlp head: 134M
    assert model.target_layer_name == "backbone.features.22"  # stride 8: 8x8 at 64 px (features.30 at 224)
    with torch.device("meta"):
        assert create_model("vgg16", img_size=224).target_layer_name == "backbone.features.30"


def test_token_grid_reshape_uses_prefix_tokens_and_grid():
    reshape = TokenGridReshape(num_prefix_tokens=5, grid_size=(2, 3))
    patches = torch.arange(2 * 6 * 4, dtype=torch.float32).view(2, 6, 4)
    tokens = torch.cat([torch.full((2, 5, 4), -1.0), patches], 1)
    out = reshape(tokens)
    assert out.shape == (2, 4, 2, 3)
    assert torch.equal(out[:, :, 1, 2], patches[:, 5, :])  # row-major patch order
    with pytest.raises(ValueError, match="expected tokens"):
        reshape(tokens[:, :-1])


def test_vit_without_class_token_and_other_sizes():
    backbone = timm.create_model("test_vit_relpos", pretrained=False, in_chans=1, num_classes=2, img_size=48)
    model = ClassifierNet(backbone, arch="test_vit_relpos", img_size=48, num_classes=2).eval()
    assert model.reshape_transform.num_prefix_tokens == backbone.num_prefix_tokens == 0
    with torch.no_grad():
        _, feature_map = target_output(model, torch.rand(1, 1, 48, 48))
    assert feature_map.shape[2:] == tuple(backbone.patch_embed.grid_size) == (3, 3)
    with torch.device("meta"):
        assert create_model("vit_small_patch16_224", img_size=224).reshape_transform.grid_size == (14, 14)
        assert create_model("test_vit", img_size=96).reshape_transform.grid_size == (6, 6)


def test_multilabel_model_attributes():
    with torch.device("meta"):
        model = create_model("test_resnet", img_size=32, num_classes=3, multilabel=True,
                             finding_names=("a", "b", "c"))
    assert model.multilabel and model.finding_names == ("a", "b", "c") and model.num_classes == 3


def test_unknown_architecture_lists_known_names():
    with pytest.raises(UnknownNameError) as info:
        create_model("resnet9000", img_size=64)
    assert "resnet9000" in str(info.value) and "resnet18" in str(info.value) and "vgg16" in str(info.value)


def test_target_layer_needs_feature_info():
    with pytest.raises(ValueError, match="feature_info"):
        target_layer_path(torch.nn.Linear(2, 2))


def test_duplicate_registration_raises():
    with pytest.raises(ValueError, match="already registered"):
        ARCHITECTURES.register("resnet18")(lambda s, n: None)
