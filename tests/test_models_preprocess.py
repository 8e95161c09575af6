"""Preprocessing inside the model: batched CLAHE equals OpenCV's, z-score, straight-through gradients."""

from __future__ import annotations

import cv2
import pytest
import torch

from harness.models.architectures import create_model
from harness.models.preprocess import Preprocess, clahe, zscore

pytestmark = pytest.mark.usefixtures("one_thread")


def images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """uint8-valued floats: skewed noise, a dark gradient and a constant image."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, h, w, generator=gen) ** 2
    x[0] = torch.linspace(0, 0.3, h * w).view(1, h, w)
    x[1] = 0.4
    return x.mul(255).round().div(255)


@pytest.mark.parametrize("h,w", [(64, 64), (224, 224), (67, 50), (32, 40)])
@pytest.mark.parametrize("clip", [2.0, 40.0])
def test_clahe_equals_opencv(h, w, clip):
    x = images(4, h, w)
    ours = clahe(x, clip_limit=clip).mul(255).round().to(torch.uint8)
    reference = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8))
    u8 = x.mul(255).round().to(torch.uint8)
    expected = torch.stack([torch.from_numpy(reference.apply(u8[i, 0].numpy())) for i in range(len(x))])[:, None]
    assert (ours.int() - expected.int()).abs().max() <= 1
    assert (ours == expected).float().mean() > 0.999


def test_clahe_is_per_image_and_keeps_shape():
    x = images(3, 48, 48, seed=1)
    batched = clahe(x)
    single = torch.cat([clahe(x[i : i + 1]) for i in range(3)])
    assert torch.equal(batched, single) and batched.shape == x.shape
    assert batched.min() >= 0 and batched.max() <= 1
    with pytest.raises(ValueError, match=r"\[B,1,H,W\]"):
        clahe(x[:, 0])


def test_zscore_per_image():
    x = torch.rand(5, 1, 16, 16) * torch.arange(1, 6).view(5, 1, 1, 1)
    z = zscore(x)
    assert torch.allclose(z.mean((1, 2, 3)), torch.zeros(5), atol=1e-5)
    assert torch.allclose(z.std((1, 2, 3), unbiased=False), torch.ones(5), atol=1e-4)
    assert torch.isfinite(zscore(torch.full((1, 1, 4, 4), 0.3))).all()  # constant image


def test_clahe_gradient_is_straight_through():
    x = images(2, 32, 32).requires_grad_(True)
    out = Preprocess("clahe")(x)
    assert torch.equal(out.detach(), clahe(x.detach()))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.equal(grad, torch.ones_like(x))


def test_model_with_clahe_zscore():
    torch.manual_seed(0)
    model = create_model("test_resnet", img_size=32, preprocess="clahe+zscore").eval()
    x = images(2, 32, 32).requires_grad_(True)
    logits = model(x)
    expected = model.backbone(zscore(clahe(x.detach())))
    assert torch.allclose(logits.detach(), expected.detach(), atol=1e-5)
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), x)
    assert grad.abs().sum() > 0  # gradient explainers still see the raw image
    assert "preprocess" not in str(list(model.state_dict()))
    with pytest.raises(ValueError, match="unknown preprocessing"):
        Preprocess("histeq")
