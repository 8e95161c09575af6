"""LRP through zennit: conservation on torchvision ResNet / VGG and plain CNNs, clear refusals elsewhere."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import harness.explain.lrp as lrp
from harness.explain import ExplainerUnsupported, create_explainer
from harness.models.architectures import ClassifierNet, create_model

LRP = ["lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box"]
TARGETS = torch.tensor([0, 3, 2])


def randomise(module: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights, non-zero biases and BatchNorm statistics, so merging and bias handling matter."""
    g = torch.Generator().manual_seed(seed)

    def uniform(t: torch.Tensor, lo: float, hi: float) -> None:
        t.data.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.data.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
            if m.bias is not None:
                uniform(m.bias, -0.1, 0.1)
        elif isinstance(m, nn.BatchNorm2d):
            uniform(m.weight, 0.5, 1.5), uniform(m.bias, -0.1, 0.1)
            uniform(m.running_mean, -0.2, 0.2), uniform(m.running_var, 0.5, 1.5)
    return module


def tv_resnet18() -> ClassifierNet:
    """torchvision ResNet-18, single-channel stem, 4 logits, wrapped like a registered architecture."""
    backbone = torchvision.models.resnet18(weights=None, num_classes=4)
    backbone.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    return ClassifierNet(randomise(backbone), arch="tv_resnet18", img_size=32, num_classes=4, target_layer="layer4")


def tv_vgg11() -> ClassifierNet:
    """torchvision VGG-11-BN with a pooled linear head (built on the meta device: its 25088x4096 MLP is dropped)."""
    with torch.device("meta"):
        backbone = torchvision.models.vgg11_bn(weights=None, num_classes=4)
        backbone.features[0] = nn.Conv2d(1, 64, 3, padding=1)
        backbone.avgpool = nn.AdaptiveAvgPool2d(1)
        backbone.classifier = nn.Linear(512, 4)
    backbone = randomise(backbone.to_empty(device="cpu"))
    return ClassifierNet(backbone, arch="tv_vgg11", img_size=32, num_classes=4,
                         target_layer=f"features.{len(backbone.features) - 1}")


def plain_cnn(preprocess: str = "none") -> ClassifierNet:
    backbone = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(16, 4))
    return ClassifierNet(randomise(backbone), arch="plain", img_size=32, num_classes=4, target_layer="4",
                         preprocess=preprocess)


@pytest.fixture(scope="module", params=["tv_resnet18", "tv_vgg11", "plain_cnn"])
def model(request) -> ClassifierNet:
    return {"tv_resnet18": tv_resnet18, "tv_vgg11": tv_vgg11, "plain_cnn": plain_cnn}[request.param]().eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def target_logits(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images).gather(1, TARGETS[:, None]).squeeze(1)


@pytest.mark.parametrize("name", LRP)
def test_relevance_is_conserved(model, images, name):
    """Input relevance sums to the target logit (biases left out of the rules, the default)."""
    relevance = create_explainer(name)(model, images, TARGETS)
    error = lrp.conservation_error(relevance, target_logits(model, images))
    assert relevance.shape == (3, 1, 32, 32) and error.max() < 0.01, error.tolist()


@pytest.mark.parametrize("name", LRP)
def test_with_biases_relevance_is_absorbed_and_the_guard_fires(model, images, name):
    """zennit's default (biases in the rules) absorbs relevance; a tight tolerance then refuses the map."""
    loose = create_explainer(name, ignore_bias=False, tolerance=None)(model, images, TARGETS)
    assert torch.isfinite(loose).all()
    error = lrp.conservation_error(loose, target_logits(model, images))
    assert error.max() > 1e-3  # the random biases take a visible share
    with pytest.raises(ExplainerUnsupported, match="not conserved"):
        create_explainer(name, ignore_bias=False, tolerance=1e-4)(model, images, TARGETS)


def test_batch_equals_one_by_one_for_multilabel_targets(model, images):
    explainer = create_explainer("lrp_epsilon_gamma_box")
    batch = explainer(model, images, TARGETS)
    single = torch.cat([explainer(model, images[i:i + 1], TARGETS[i:i + 1]) for i in range(3)])
    assert torch.allclose(batch, single, rtol=1e-4, atol=1e-6 * float(single.abs().max()))
    assert not torch.allclose(explainer(model, images[:1], torch.tensor([1])), batch[:1])


@pytest.mark.parametrize("name", LRP)
def test_canonizers_hooks_modes_and_grads_are_restored_even_on_error(model, images, name):
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modules = [(n, type(m)) for n, m in model.named_modules()]
    head = model.backbone.fc if hasattr(model.backbone, "fc") else list(model.backbone.modules())[-1]
    for failing in (False, True):
        handle = head.register_forward_hook(lambda *_: (_ for _ in ()).throw(RuntimeError("boom"))) if failing else None
        try:
            if failing:
                with pytest.raises(RuntimeError, match="boom"):
                    create_explainer(name)(model, images, TARGETS)
            else:
                create_explainer(name)(model, images, TARGETS)
        finally:
            if handle is not None:
                handle.remove()
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())  # BatchNorm un-merged
        assert [(n, type(m)) for n, m in model.named_modules()] == modules  # no canonizer Sum modules left
        assert not any("forward" in vars(m) for m in model.modules())  # no overridden block forwards
        assert all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
                   for m in model.modules())
        assert all(m.training for m in model.modules())
        assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    model.eval()


def test_box_bounds_live_in_the_backbones_input_space(images):
    """z^B bounds are [0,1] mapped through ClassifierNet's (x - 0.5) / 0.25: [-2, 2], as zennit is called by hand."""
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonGammaBox

    model = plain_cnn().eval()
    ours = create_explainer("lrp_epsilon_gamma_box")(model, images, TARGETS)
    z = ((images - 0.5) / 0.25).requires_grad_(True)
    composite = EpsilonGammaBox(low=torch.tensor(-2.0), high=torch.tensor(2.0), zero_params=["bias"],
                                canonizers=[SequentialMergeBatchNorm()])
    with composite.context(model.backbone):
        logits = model.backbone(z)
        seed = torch.zeros_like(logits).scatter(1, TARGETS[:, None], logits.gather(1, TARGETS[:, None]))
        (expected,) = torch.autograd.grad(logits, z, grad_outputs=seed.detach())
    assert torch.allclose(ours, expected, rtol=1e-5, atol=1e-8)
    unit_box = create_explainer("lrp_epsilon_gamma_box")(model.backbone, (images - 0.5) / 0.25, TARGETS)
    assert not torch.allclose(unit_box, ours)  # a bare backbone is boxed in [0,1]: different relevance


@pytest.mark.parametrize("preprocess", ["none", "zscore", "clahe+zscore"])
def test_backbone_input_is_what_the_model_feeds_its_backbone(images, preprocess):
    model = plain_cnn(preprocess).eval()
    z, low, high = lrp.backbone_input(model, images)
    with torch.no_grad():
        assert torch.allclose(model.backbone(z), model(images), atol=1e-5)
    assert (low <= z.amin(dim=(1, 2, 3), keepdim=True) + 1e-5).all()
    assert (high >= z.amax(dim=(1, 2, 3), keepdim=True) - 1e-5).all()
    relevance = create_explainer("lrp_epsilon_gamma_box")(model, images, TARGETS)
    assert lrp.conservation_error(relevance, target_logits(model, images)).max() < 0.01


@pytest.mark.parametrize("arch,reason", [("test_resnet", "ResNetCanonizer"), ("test_vit", "attention")])
@pytest.mark.parametrize("name", LRP)
def test_timm_models_are_unsupported_with_a_reason(arch, reason, name, images):
    model = create_model(arch, img_size=32, num_classes=4)
    with pytest.raises(ExplainerUnsupported, match=reason):
        create_explainer(name)(model, images, TARGETS)


def test_other_structures_are_unsupported():
    class Custom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)

        def forward(self, x):
            return self.conv(x).mean(dim=(2, 3))

    with pytest.raises(ExplainerUnsupported, match="supported are torchvision ResNet and VGG"):
        create_explainer("lrp_epsilon_plus_flat")(Custom(), torch.rand(1, 1, 8, 8), torch.tensor([0]))
    with_gelu = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ExplainerUnsupported):
        create_explainer("lrp_epsilon_plus_flat")(with_gelu, torch.rand(1, 1, 8, 8), torch.tensor([0]))


def test_runtime_guard_catches_a_timm_resnet_forced_through(monkeypatch, images):
    """If the structural check let a timm ResNet through, the conservation check would refuse it.

    timm zero-initialises each block's last BatchNorm (``zero_init_last``): at random init the
    residual branches are dead and relevance happens to be conserved. With live branches (as after
    training; here random BatchNorm weights) every residual addition doubles the relevance: 2^4 = 16x
    the logit on test_resnet's four blocks (256x on resnet18's eight).
    """
    from zennit.torchvision import ResNetCanonizer

    monkeypatch.setattr(lrp, "lrp_canonizers", lambda backbone: [ResNetCanonizer()])
    model = create_model("test_resnet", img_size=32, num_classes=4).eval()
    randomise(model.backbone)
    relevance = create_explainer("lrp_epsilon_plus_flat", tolerance=None)(model, images, TARGETS)
    ratio = relevance.sum(dim=(1, 2, 3)) / target_logits(model, images)
    assert torch.allclose(ratio, torch.full_like(ratio, 16.0), rtol=1e-3)
    with pytest.raises(ExplainerUnsupported, match="not conserved"):
        create_explainer("lrp_epsilon_plus_flat")(model, images, TARGETS)


@pytest.mark.parametrize("name", LRP)
def test_works_under_no_grad_and_inference_mode(images, name):
    model = plain_cnn().eval()
    explainer = create_explainer(name)
    expected = explainer(model, images, TARGETS)
    with torch.no_grad():
        assert torch.allclose(explainer(model, images, TARGETS), expected)
    with torch.inference_mode():
        got = explainer(model, images.clone(), TARGETS)
    assert torch.allclose(got, expected)
