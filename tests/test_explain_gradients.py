"""The gradient family: gradient x input, Integrated Gradients, SmoothGrad, Guided Backprop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harness.explain import ExplainerUnsupported, create_explainer
from harness.models.architectures import create_model


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return create_model("test_resnet", img_size=32, num_classes=4).eval()


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    return create_model("test_vit", img_size=32, num_classes=4).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 3, 2])


class SmoothNet(nn.Module):
    """A small CNN with smooth activations (softplus, tanh): Integrated Gradients' quadrature converges."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.Softplus(), nn.Conv2d(8, 8, 3, stride=2),
                                      nn.Tanh())
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


class CountingForwards:
    """Records the batch size of every forward pass of a model (a forward pre-hook)."""

    def __init__(self, model: nn.Module) -> None:
        self.sizes: list[int] = []
        self.handle = model.register_forward_pre_hook(lambda _m, inputs: self.sizes.append(inputs[0].shape[0]))

    def __enter__(self) -> CountingForwards:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.remove()


def target_logits(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).gather(1, targets[:, None]).squeeze(1)


def test_gradient_x_input_is_image_times_gradient(resnet, batch):
    images, targets = batch
    grad = create_explainer("gradient")(resnet, images, targets)
    assert torch.allclose(create_explainer("gradient_x_input")(resnet, images, targets), images * grad, atol=1e-7)


@pytest.mark.parametrize("model_name", ["smooth", "vit"])
def test_integrated_gradients_completeness(vit, batch, model_name):
    """Sundararajan et al.: attributions sum to f(x) - f(baseline); midpoint rule, 32 steps."""
    torch.manual_seed(0)
    model = SmoothNet().eval() if model_name == "smooth" else vit
    images, targets = batch
    maps = create_explainer("integrated_gradients")(model, images, targets)
    gap = target_logits(model, images, targets) - target_logits(model, torch.zeros_like(images), targets)
    error = (maps.sum(dim=(1, 2, 3)) - gap).abs() / gap.abs()
    assert error.max() < 2e-3, f"relative completeness error {error.tolist()}"


def test_integrated_gradients_completeness_improves_with_steps(batch):
    torch.manual_seed(0)
    model = SmoothNet().eval()
    images, targets = batch
    gap = target_logits(model, images, targets) - target_logits(model, torch.zeros_like(images), targets)
    errors = [float((create_explainer("integrated_gradients", steps=s)(model, images, targets).sum(dim=(1, 2, 3))
                     - gap).abs().max()) for s in (2, 8, 32)]
    assert errors[0] > errors[1] > errors[2]


@pytest.mark.parametrize("internal_batch_size", [1, 5, 96, 1000])
def test_integrated_gradients_memory_bound_and_batching_invariance(resnet, batch, internal_batch_size):
    images, targets = batch
    reference = create_explainer("integrated_gradients", steps=32)(resnet, images, targets)
    explainer = create_explainer("integrated_gradients", steps=32, internal_batch_size=internal_batch_size)
    with CountingForwards(resnet) as forwards:
        maps = explainer(resnet, images, targets)
    assert max(forwards.sizes) <= internal_batch_size and sum(forwards.sizes) == 3 * 32
    assert torch.allclose(maps, reference, rtol=1e-4, atol=1e-7)


def test_integrated_gradients_baseline_option(resnet, batch):
    images, targets = batch
    grey = create_explainer("integrated_gradients", baseline=0.5, steps=8)(resnet, images, targets)
    assert not torch.allclose(grey, create_explainer("integrated_gradients", steps=8)(resnet, images, targets))
    flat = torch.full_like(images, 0.5)
    assert torch.equal(create_explainer("integrated_gradients", baseline=0.5)(resnet, flat, targets),
                       torch.zeros_like(flat))  # x == baseline: nothing to attribute


def test_smoothgrad_same_seed_same_map_and_batch_independent(resnet, batch):
    images, targets = batch
    explainer = create_explainer("smoothgrad", n=8, seed=3)
    maps = explainer(resnet, images, targets)
    assert torch.equal(maps, explainer(resnet, images, targets))
    assert torch.allclose(maps[1:2], explainer(resnet, images[1:2], targets[1:2]), rtol=1e-4, atol=1e-8)
    small_passes = create_explainer("smoothgrad", n=8, seed=3, internal_batch_size=2)
    with CountingForwards(resnet) as forwards:
        assert torch.allclose(small_passes(resnet, images, targets), maps, rtol=1e-4, atol=1e-8)
    assert max(forwards.sizes) <= 2 and sum(forwards.sizes) == 3 * 8
    assert not torch.allclose(maps, create_explainer("smoothgrad", n=8, seed=4)(resnet, images, targets))


def test_smoothgrad_without_noise_is_the_gradient(resnet, batch):
    images, targets = batch
    smooth = create_explainer("smoothgrad", n=3, sigma=0.0)(resnet, images, targets)
    assert torch.allclose(smooth, create_explainer("gradient")(resnet, images, targets), rtol=1e-5, atol=1e-9)


def test_smoothgrad_noise_scales_with_the_image_range(resnet, batch):
    """sigma is a fraction of each image's range: a half-contrast copy gets half the noise."""
    images, targets = batch
    explainer = create_explainer("smoothgrad", n=4, sigma=0.2)
    low_contrast = 0.25 + 0.5 * images
    noise_full, noise_half = [], []
    for source, store in ((images, noise_full), (low_contrast, noise_half)):
        probe = CountingInputs(resnet)
        with probe:
            explainer(resnet, source, targets)
        store.append(torch.cat(probe.inputs)[:3] - source)  # the first copy of every image
    ratio = noise_half[0].std() / noise_full[0].std()
    assert abs(float(ratio) - 0.5) < 0.02


class CountingInputs(CountingForwards):
    """Records the inputs of every forward pass."""

    def __init__(self, model: nn.Module) -> None:
        self.inputs: list[torch.Tensor] = []
        self.handle = model.register_forward_pre_hook(lambda _m, inputs: self.inputs.append(inputs[0].detach()))


def test_guided_backprop_matches_pytorch_grad_cam(resnet, batch):
    """Our hook-based Guided Backprop equals the library's module-replacing one (on a copy)."""
    from pytorch_grad_cam import GuidedBackpropReLUModel

    images, targets = batch
    ours = create_explainer("guided_backprop")(resnet, images, targets)
    for i in range(3):
        reference = GuidedBackpropReLUModel(copy.deepcopy(resnet), device="cpu")(images[i:i + 1].clone(),
                                                                                 int(targets[i]))
        expected = torch.from_numpy(reference).permute(2, 0, 1).sum(0)
        assert torch.allclose(ours[i, 0], expected, rtol=1e-4, atol=1e-7)


def test_guided_backprop_differs_from_the_gradient_and_keeps_inplace_relus(resnet, batch):
    images, targets = batch
    inplace = [m for m in resnet.modules() if isinstance(m, nn.ReLU) and m.inplace]
    assert inplace  # timm ResNets use ReLU(inplace=True)
    guided = create_explainer("guided_backprop")(resnet, images, targets)
    assert not torch.allclose(guided, create_explainer("gradient")(resnet, images, targets))
    assert all(m.inplace for m in inplace)


@pytest.mark.parametrize("activation,found", [(nn.GELU(), "GELU"), (nn.SiLU(), "SiLU"), (nn.Identity(), "no ReLU")])
def test_guided_backprop_raises_where_it_is_not_defined(activation, found):
    model = nn.Sequential(nn.Conv2d(1, 4, 3), activation, nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 1, 8, 8))
    with pytest.raises(ExplainerUnsupported, match=found):
        create_explainer("guided_backprop")(model, torch.rand(2, 1, 8, 8), torch.tensor([0, 1]))


def test_guided_backprop_on_the_vit_is_unsupported(vit, batch):
    with pytest.raises(ExplainerUnsupported, match="GELU"):
        create_explainer("guided_backprop")(vit, *batch)
