"""Architecture registry: every architecture builds, forwards, and exposes a usable CAM target layer."""

from __future__ import annotations

import pytest
import timm
import torch

from harness.models.architectures import (
    ARCHITECTURES,
    ClassifierNet,
    TokenGridReshape,
    create_model,
    list_architectures,
    target_layer_path,
)
from harness.registry import UnknownNameError

REQUIRED = ["resnet18", "resnet50", "vgg16", "densenet121", "efficientnet_b0", "vit_small_patch16_224",
            "vit_base_patch16_224"]
CASES = [(arch, 64) for arch in list_architectures()] + [
    ("vit_small_patch16_224", 224), ("vit_base_patch16_224", 224)]


@pytest.fixture(autouse=True)
def one_thread():
    """Batch-2 forwards gain nothing from a second thread; on a shared 2-core machine two OpenMP
    threads competing with other processes are 10-100x slower. Restored after the test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def target_output(model: ClassifierNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    captured = {}
    handle = model.target_layer.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    try:
        with torch.no_grad():
            logits = model(images)
    finally:
        handle.remove()
    out = captured["out"]
    return logits, (model.reshape_transform(out) if model.reshape_transform else out)


def test_required_architectures_are_registered_under_timm_names():
    assert set(REQUIRED) <= set(list_architectures())
    for arch in REQUIRED:
        assert arch in timm.list_models(arch)


@pytest.mark.parametrize("arch,size", CASES, ids=[f"{a}-{s}" for a, s in CASES])
def test_architecture_builds_forwards_and_has_4d_target(arch, size):
    torch.manual_seed(0)
    model = create_model(arch, img_size=size).eval()
    assert (model.arch, model.img_size, model.num_classes) == (arch, size, 2)
    logits, feature_map = target_output(model, torch.rand(2, 1, size, size))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    assert feature_map.ndim == 4 and feature_map.shape[0] == 2
    assert feature_map.shape[2] >= 1 and feature_map.shape[3] >= 1
    assert model.is_vit == arch.startswith(("vit", "test_vit"))
    if model.is_vit:
        grid = tuple(model.backbone.patch_embed.grid_size)
        assert feature_map.shape[2:] == grid == (size // 16, size // 16)
        assert model.target_layer is model.backbone.blocks[-1].norm1
    else:
        assert model.reshape_transform is None
        assert model.target_layer is model.backbone.get_submodule(model.backbone.feature_info[-1]["module"])
    # the target layer is a view, not a second copy in the state dict
    assert all(k.startswith("backbone.") for k in model.state_dict())


def test_normalisation_is_fixed_and_not_saved():
    model = create_model("test_resnet", img_size=32).eval()
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone((x - 0.5) / 0.25))
    assert "input_mean" not in model.state_dict()


def test_vgg16_uses_a_pooled_head():
    model = create_model("vgg16", img_size=64)
    assert sum(p.numel() for p in model.parameters()) < 20_000_000  # timm's ConvMlp head: 134M
    assert model.target_layer_name == "backbone.features.30"


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
    _, feature_map = target_output(model, torch.rand(1, 1, 48, 48))
    assert feature_map.shape[2:] == tuple(backbone.patch_embed.grid_size) == (3, 3)
    vit96 = create_model("test_vit", img_size=96)
    assert vit96.reshape_transform.grid_size == (6, 6)


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
