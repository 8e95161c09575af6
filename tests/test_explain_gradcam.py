"""Our batched Grad-CAM / Grad-CAM++ against pytorch-grad-cam 1.5.7 on random-init ResNet and ViT."""

from __future__ import annotations

import pytest
import timm
import torch

from harness.explain import create_explainer, layer_view


def resnet18() -> torch.nn.Module:
    model = timm.create_model("resnet18", in_chans=1, num_classes=2, pretrained=False)
    object.__setattr__(model, "target_layer", model.layer4)  # a reference, not a second submodule
    model.reshape_transform = None
    return model


def vit_small() -> torch.nn.Module:
    model = timm.create_model("vit_small_patch16_224", img_size=64, in_chans=1, num_classes=2, pretrained=False)
    object.__setattr__(model, "target_layer", model.blocks[-1].norm1)
    prefix, (h, w) = model.num_prefix_tokens, model.patch_embed.grid_size

    def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, prefix:].reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)

    model.reshape_transform = tokens_to_grid
    return model


@pytest.fixture(scope="module", params=["resnet18", "vit_small"])
def model(request) -> torch.nn.Module:
    torch.manual_seed(0)
    return {"resnet18": resnet18, "vit_small": vit_small}[request.param]()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, 1, 64, 64, generator=g)
    targets = torch.tensor([0, 1, 1, 0, 1, 0])  # different targets per sample
    return images, targets


@pytest.mark.parametrize("ours,reference", [("gradcam", "gradcam-lib"), ("gradcam++", "gradcam++-lib")])
def test_unit_view_equals_pytorch_grad_cam(model, batch, ours, reference):
    images, targets = batch
    explainer, library = create_explainer(ours), create_explainer(reference)
    raw = explainer(model, images, targets)
    expected = library(model, images, targets)
    assert raw.shape == expected.shape == (6, 1, 64, 64)
    assert (explainer.unit_view(raw) - expected).abs().max() < 1e-4
    # The same comparison through the layer-resolution CAM and the library's normalisation order.
    assert (layer_view(explainer.layer_maps(model, images, targets), (64, 64)) - expected).abs().max() < 1e-4


def test_targets_are_per_sample_not_one_for_the_batch(model, batch):
    """Swapping a sample's target changes only that sample's map (the library pitfall we avoid)."""
    images, targets = batch
    explainer = create_explainer("gradcam")
    base = explainer(model, images, targets)
    flipped = targets.clone()
    flipped[3] = 1 - flipped[3]
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


def test_library_wrapper_leaves_grads_and_mode_alone(batch):
    images, targets = batch
    model = resnet18().train()
    create_explainer("gradcam-lib")(model, images[:2], targets[:2])
    assert model.training and model.layer4.training
    assert all(p.grad is None for p in model.parameters())
