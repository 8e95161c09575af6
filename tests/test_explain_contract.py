"""The explainer contract: registry, one target per sample, side effects undone, polarity, controls."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from harness.explain import (
    EXPLAINERS,
    Explainer,
    ExplainerUnsupported,
    create_explainer,
    list_explainers,
    register_explainer,
)
from harness.registry import UnknownNameError

BUILTIN = ["gradcam", "gradcam++", "scorecam", "gradcam-lib", "gradcam++-lib", "hirescam", "xgradcam", "layercam",
           "eigencam", "gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "guided_backprop",
           "lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box", "random", "edge", "constant"]
ALL = EXPLAINERS.names()
MODEL_BASED = [n for n in ALL if not EXPLAINERS.meta(n)["is_control"]]


def explain_or_skip(explainer: Explainer, model: nn.Module, images: torch.Tensor, targets: torch.Tensor):
    try:
        return explainer(model, images, targets)
    except ExplainerUnsupported as why:
        pytest.skip(f"{explainer.name} unsupported here: {why}")


def tiny_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", in_chans=1, num_classes=2, pretrained=False)
    object.__setattr__(model, "target_layer", model.layer4)
    model.reshape_transform = None
    return model


class RegionNet(nn.Module):
    """Logit 1 is the mean of the image inside a known square; logit 0 its negative.

    A stride-4 averaging convolution is the Grad-CAM target layer; the readout averages its cells
    inside the square (pixel rows 8..15, columns 20..31 of a 32x32 image).
    """

    rows, cols = slice(8, 16), slice(20, 32)

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.Conv2d(1, 1, 4, stride=4, bias=False)
        nn.init.constant_(self.pool.weight, 1 / 16)
        cells = torch.zeros(1, 1, 8, 8)
        cells[..., 2:4, 5:8] = 1
        self.register_buffer("cells", cells)
        self.target_layer = self.pool
        self.reshape_transform = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = (self.pool(x) * self.cells).sum(dim=(1, 2, 3)) / self.cells.sum()
        return torch.stack([-inside, inside], dim=1)

    @classmethod
    def region(cls) -> torch.Tensor:
        mask = torch.zeros(32, 32, dtype=torch.bool)
        mask[cls.rows, cls.cols] = True
        return mask


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    return tiny_resnet()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def test_registry_lists_the_builtin_explainers():
    listed = {name: (desc, control) for name, desc, control in list_explainers()}
    assert set(BUILTIN) <= set(listed)
    assert all(desc for desc, _ in listed.values())
    assert {n for n, (_, c) in listed.items() if c} >= {"random", "edge", "constant"}
    assert not any(listed[n][1] for n in MODEL_BASED)
    assert [n for n, _, _ in list_explainers()] == sorted(listed)
    for name in ALL:
        explainer = create_explainer(name)
        assert isinstance(explainer, Explainer) and explainer.name == name


def test_unknown_and_duplicate_names_raise():
    with pytest.raises(UnknownNameError, match="gradcam"):
        create_explainer("grad-cam")
    with pytest.raises(ValueError, match="already registered"):
        register_explainer(type("Again", (Explainer,), {"name": "gradcam", "description": "x", "category": "cam"}))
    with pytest.raises(ValueError, match="category"):
        register_explainer(type("Uncategorised", (Explainer,), {"name": "new", "description": "x"}))
    with pytest.raises(ValueError, match="contradicts"):
        register_explainer(type("Confused", (Explainer,), {"name": "new", "description": "x", "category": "control"}))
    with pytest.raises(ValueError, match="name"):
        register_explainer(type("Nameless", (Explainer,), {}))
    assert EXPLAINERS.get("gradcam").__name__ == "GradCAM"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("targets", [torch.tensor([1, 1]), torch.tensor([[1], [1], [1]]), torch.tensor(1),
                                     torch.tensor([1.0, 1.0, 1.0])])
def test_one_target_per_sample_or_raise(resnet, images, name, targets):
    with pytest.raises((ValueError, TypeError)):
        create_explainer(name)(resnet, images, targets)


@pytest.mark.parametrize("name", ALL)
def test_output_contract(resnet, images, name):
    explainer = create_explainer(name)
    raw = explain_or_skip(explainer, resnet, images, torch.tensor([0, 1, 1]))
    assert raw.shape == (3, 1, 32, 32) and raw.dtype == torch.float32 and raw.device == images.device
    assert torch.isfinite(raw).all()
    view = explainer.unit_view(raw)
    assert view.shape == raw.shape and view.min() >= 0 and view.max() <= 1


@pytest.mark.parametrize("name", MODEL_BASED)
def test_side_effects_undone_even_on_error(name):
    model = tiny_resnet()
    model.train()
    model.layer1.eval()  # a mixed state must come back exactly
    explainer = create_explainer(name)
    explain_or_skip(explainer, model, torch.rand(2, 1, 32, 32), torch.tensor([0, 1]))
    with pytest.raises((ValueError, IndexError, RuntimeError)):
        explainer(model, torch.rand(2, 1, 32, 32), torch.tensor([0, 5]))  # class 5 does not exist
    assert model.training and model.layer4.training and not model.layer1.training
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", MODEL_BASED)
def test_works_under_no_grad_and_inference_mode(resnet, images, name):
    explainer = create_explainer(name)
    targets = torch.tensor([0, 1, 0])
    expected = explain_or_skip(explainer, resnet, images, targets)
    with torch.no_grad():
        assert torch.allclose(explainer(resnet, images, targets), expected, atol=1e-6)
    with torch.inference_mode():
        inference_images = images.clone()
        got = explainer(resnet, inference_images, targets)
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("name", MODEL_BASED)
def test_polarity_maximum_on_the_region_the_logit_reads(name):
    """A lesion-only image: every non-control explainer must put its maximum inside the region."""
    g = torch.Generator().manual_seed(3)
    image = 0.05 * torch.rand(2, 1, 32, 32, generator=g)
    image[..., RegionNet.rows, RegionNet.cols] += 0.9
    model = RegionNet()
    explainer = create_explainer(name)
    raw = explain_or_skip(explainer, model, image, torch.tensor([1, 1]))
    region = RegionNet.region().flatten()
    for maps in (raw, explainer.unit_view(raw)):
        first_argmax = maps.flatten(1).argmax(1)
        assert region[first_argmax].all(), f"{name}: maximum outside the region"


def test_random_control_is_noise_independent_of_model_and_image(resnet, images):
    """Binder et al. 2023: a control that depends on the image content is not a noise control."""
    control = create_explainer("random")
    targets = torch.tensor([0, 1, 0])
    first = control(resnet, images, targets)
    second = control(resnet, images, targets)
    assert not torch.allclose(first, second)  # each call draws afresh, even for the same images
    replay = create_explainer("random")
    assert torch.equal(replay(RegionNet(), images.flip(0), torch.tensor([1, 1, 1])), first)  # run seed + call only
    assert torch.equal(replay(resnet, torch.rand_like(images), targets), second)
    assert not torch.allclose(first[0], first[1])
    assert not torch.allclose(first, create_explainer("random", seed=1)(resnet, images, targets))
    smooth = (first[..., 1:, :] - first[..., :-1, :]).abs().mean() < 0.5 * first.std()
    assert smooth


def test_unit_view_policies():
    raw = torch.tensor([[-4.0, -1.0], [0.0, 2.0]]).view(1, 1, 2, 2)
    assert torch.allclose(create_explainer("gradcam").unit_view(raw).flatten(), torch.tensor([0, 0, 0, 1.0]))
    assert torch.allclose(create_explainer("gradient").unit_view(raw).flatten(), torch.tensor([1, 0.25, 0, 0.5]))
    assert torch.allclose(create_explainer("random").unit_view(raw).flatten(), torch.tensor([0, 0.5, 4 / 6, 1]))
    constant = torch.full((2, 1, 3, 3), 7.0)
    for name in ALL:
        assert torch.equal(create_explainer(name).unit_view(constant), torch.zeros_like(constant))


class InplaceAfterTarget(nn.Module):
    """The target conv's output is modified in place by the next layer (ReLU(inplace=True))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(4, 2)
        self.target_layer = self.conv
        self.reshape_transform = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("name", ["gradcam", "gradcam++"])
def test_cam_of_a_layer_followed_by_an_inplace_op(name):
    torch.manual_seed(0)
    model = InplaceAfterTarget()
    images = torch.rand(2, 1, 8, 8)
    targets = torch.tensor([0, 1])
    cams = create_explainer(name).layer_maps(model, images, targets)
    # Reference by hand: activation = conv output (before the in-place ReLU), its gradient by autograd.
    act = model.conv(images).detach().requires_grad_(True)
    logits = model.head(torch.relu(act).mean(dim=(2, 3)))
    (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), act)
    weights = create_explainer(name).channel_weights(act.detach(), grad)
    assert torch.allclose(cams, (weights[:, :, None, None] * act.detach()).sum(1, keepdim=True), atol=1e-6)


def test_layer_maps_checks_targets_too(resnet, images):
    with pytest.raises(ValueError, match="one target per sample"):
        create_explainer("gradcam").layer_maps(resnet, images, torch.tensor([1, 1]))
