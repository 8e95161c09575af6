"""The CAM family against pytorch-grad-cam 1.5.7 on random-init ResNets and ViTs, several targets per batch.

By default on timm's tiny test networks at 96 px (3x3 and 6x6 feature maps); the slow variant repeats
the batched-vs-library comparison on ResNet-18 and ViT-S/16 at 64 px.
"""

from __future__ import annotations

import pytest
import timm
import torch

from harness.explain import create_explainer, layer_view
from harness.explain.hooks import capture_output
from harness.models.architectures import create_model

NUM_LOGITS = 4
SIZE = 96
LIBRARY_CAMS = ["gradcam-lib", "gradcam++-lib", "hirescam", "xgradcam", "layercam", "eigencam"]


def resnet18() -> torch.nn.Module:
    model = timm.create_model("resnet18", in_chans=1, num_classes=NUM_LOGITS, pretrained=False)
    object.__setattr__(model, "target_layer", model.layer4)  # a reference, not a second submodule
    model.reshape_transform = None
    return model


def vit_small() -> torch.nn.Module:
    model = timm.create_model("vit_small_patch16_224", img_size=64, in_chans=1, num_classes=NUM_LOGITS,
                              pretrained=False)
    object.__setattr__(model, "target_layer", model.blocks[-1].norm1)
    prefix, (h, w) = model.num_prefix_tokens, model.patch_embed.grid_size

    def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, prefix:].reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)

    model.reshape_transform = tokens_to_grid
    return model


@pytest.fixture(scope="module", params=["test_resnet", "test_vit"])
def model(request) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(request.param, img_size=SIZE, num_classes=NUM_LOGITS).eval()


def random_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(6, 1, size, size, generator=torch.Generator().manual_seed(1))
    return images, torch.tensor([0, 3, 1, 2, 3, 0])  # every class, different targets per sample


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return random_batch(SIZE)


def check_batched_equals_library(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                                 ours: str, reference: str) -> None:
    explainer = create_explainer(ours)
    raw = explainer(model, images, targets)
    expected = create_explainer(reference).library_maps(model, images, targets)
    size = tuple(images.shape[-2:])
    assert raw.shape == expected.shape == (6, 1, *size)
    assert (explainer.unit_view(raw) - expected).abs().max() < 1e-4
    # The same comparison through the layer-resolution CAM and the library's normalisation order.
    assert (layer_view(explainer.layer_maps(model, images, targets), size) - expected).abs().max() < 1e-4
    # And the raw maps: ours equals the library wrapper's raw signed map (same formula, same upsampling).
    library_raw = create_explainer(reference)(model, images, targets)
    assert (raw - library_raw).abs().max() <= 1e-4 * library_raw.abs().max()


PAIRS = [("gradcam", "gradcam-lib"), ("gradcam++", "gradcam++-lib")]


@pytest.mark.parametrize("ours,reference", PAIRS)
def test_batched_cams_equal_pytorch_grad_cam(model, batch, ours, reference):
    check_batched_equals_library(model, *batch, ours, reference)


@pytest.mark.slow
@pytest.mark.parametrize("build", [resnet18, vit_small])
def test_batched_cams_equal_pytorch_grad_cam_on_full_size_models(build):
    torch.manual_seed(0)
    model = build().eval()
    for ours, reference in PAIRS:
        check_batched_equals_library(model, *random_batch(64), ours, reference)


@pytest.mark.parametrize("name", LIBRARY_CAMS)
def test_library_raw_maps_view_as_the_librarys_own_maps(model, batch, name):
    """Raw signed maps keep the scale; their unit view is exactly what the library displays."""
    images, targets = batch
    explainer = create_explainer(name, orient=False) if name == "eigencam" else create_explainer(name)
    raw = explainer(model, images, targets)
    assert raw.shape == (6, 1, SIZE, SIZE) and torch.isfinite(raw).all()
    expected = explainer.library_maps(model, images, targets)
    assert (explainer.unit_view(raw) - expected).abs().max() < 1e-4


def test_eigencam_orientation_is_the_librarys_sign_correction(model, batch):
    """Oriented Eigen-CAM = the library's projection, flipped as ``get_2d_projection_with_sign_correction`` does."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

    images, targets = batch
    oriented, _ = create_explainer("eigencam").run_library(model, images, targets)  # layer resolution, signed
    plain, _ = create_explainer("eigencam", orient=False).run_library(model, images, targets)
    with torch.no_grad(), capture_output(model.target_layer) as captured:
        model(images)
    activations = captured.single().detach()
    activations = model.reshape_transform(activations) if model.reshape_transform else activations
    expected = torch.from_numpy(get_2d_projection_with_sign_correction(activations.numpy()))
    assert torch.allclose(oriented[:, 0], expected, rtol=1e-3, atol=1e-4 * float(expected.abs().max()))
    flipped = ~torch.isclose(oriented, plain).flatten(1).all(1)
    assert torch.allclose(oriented[flipped], -plain[flipped])
    assert torch.equal(create_explainer("eigencam")(model, images, targets),
                       create_explainer("eigencam")(model, images, targets.flip(0)))  # ignores targets


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit"])
@pytest.mark.parametrize("batch_size", [1, 7, 10_000])
def test_scorecam_equals_pytorch_grad_cam(arch, batch_size):
    """Our batched Score-CAM against the library's own loop (which prints progress bars; captured here).

    Tiny models: Score-CAM costs one forward pass per sample and channel (512 per image on ResNet-18).
    """
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = create_model(arch, img_size=64, num_classes=NUM_LOGITS).eval()  # 2x2 and 4x4 feature maps
    images, targets = (t[:3] for t in random_batch(64))
    explainer = create_explainer("scorecam", batch_size=batch_size)
    ours = explainer.unit_view(explainer(model, images, targets))
    cam = ScoreCAM(model=model, target_layers=[model.target_layer], reshape_transform=model.reshape_transform)
    try:
        expected = cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    finally:
        cam.activations_and_grads.release()
    assert (ours[:, 0] - torch.from_numpy(expected)).abs().max() < 1e-4


def test_scorecam_works_on_a_one_cell_feature_map():
    """32 px through a stride-32 ResNet: a 1x1 map gives a constant (not NaN) Score-CAM."""
    torch.manual_seed(0)
    model = create_model("test_resnet", img_size=32, num_classes=NUM_LOGITS).eval()
    model.target_layer_name = "backbone.layer4"  # the stride-32 stage (the CAM rule would pick a finer one)
    maps = create_explainer("scorecam", batch_size=16)(model, torch.rand(2, 1, 32, 32), torch.tensor([0, 3]))
    assert torch.isfinite(maps).all() and torch.allclose(maps, maps[:, :, :1, :1].expand_as(maps), rtol=1e-6)


def test_targets_are_per_sample_not_one_for_the_batch(model, batch):
    """Swapping a sample's target changes only that sample's map (the library pitfall we avoid)."""
    images, targets = batch
    for name in ("gradcam", "hirescam", "layercam"):
        explainer = create_explainer(name)
        base = explainer(model, images, targets)
        flipped = targets.clone()
        flipped[3] = (flipped[3] + 1) % NUM_LOGITS
        changed = explainer(model, images, flipped)
        assert torch.allclose(base[[0, 1, 2, 4, 5]], changed[[0, 1, 2, 4, 5]], atol=1e-6)
        assert not torch.allclose(base[3], changed[3])
        single = explainer(model, images[3:4], flipped[3:4])
        assert torch.allclose(single, changed[3:4], atol=1e-5)


def test_layer_maps_match_library_signed_cam(model, batch):
    """The signed layer-resolution CAM equals the library's own ``get_cam_image`` (before its ReLU)."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images, targets = batch
    ours = create_explainer("gradcam").layer_maps(model, images, targets)[:, 0]
    cam = GradCAM(model=model, target_layers=[model.target_layer], reshape_transform=model.reshape_transform)
    try:
        cam(input_tensor=images, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        signed = cam.get_cam_image(images, model.target_layer, None, acts, grads)
    finally:
        cam.activations_and_grads.release()
    expected = torch.from_numpy(signed)
    assert (ours - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("name", LIBRARY_CAMS)
def test_library_wrapper_leaves_grads_and_mode_alone(batch, name):
    images, targets = batch
    model = create_model("test_resnet", img_size=SIZE, num_classes=NUM_LOGITS).train()
    create_explainer(name)(model, images[:2], targets[:2])
    assert model.training and model.backbone.layer4.training
    assert all(p.grad is None for p in model.parameters())
