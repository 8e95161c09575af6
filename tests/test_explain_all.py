"""Every registered explainer on a tiny CNN and a tiny ViT: the contract, side effects, multi-label targets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.explain import CATEGORIES, EXPLAINERS, ExplainerUnsupported, create_explainer
from harness.models.architectures import create_model

ARCHS = ["test_resnet", "test_vit"]
NUM_LOGITS = 4
TARGETS = [0, 3, 2]

#: The combinations that must raise ExplainerUnsupported, with a phrase their reason must contain.
UNSUPPORTED = {
    ("test_resnet", "lrp_epsilon_plus_flat"): "ResNetCanonizer",
    ("test_resnet", "lrp_epsilon_gamma_box"): "ResNetCanonizer",
    ("test_vit", "lrp_epsilon_plus_flat"): "attention",
    ("test_vit", "lrp_epsilon_gamma_box"): "attention",
    ("test_vit", "guided_backprop"): "GELU",
}

GLOBAL_HOOKS = ("forward_hooks", "forward_pre_hooks", "backward_hooks", "backward_pre_hooks")

#: Explainers whose map does not depend on the target (Eigen-CAM by design; the controls), and Score-CAM
#: on test_resnet at 32 px: its 1x1 feature map gives constant masks, uniform weights, a constant map.
TARGET_FREE = {"eigencam", "random", "edge", "constant", ("test_resnet", "scorecam")}


@pytest.fixture(scope="module", params=ARCHS)
def model(request) -> nn.Module:
    torch.manual_seed(0)
    return create_model(request.param, img_size=32, num_classes=NUM_LOGITS)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(0))


def side_effect_state(model: nn.Module) -> tuple:
    """Everything an explainer may touch: hooks, modes, instance overrides, submodules, params, grads."""
    hooks = [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
              len(m._backward_pre_hooks)) for m in model.modules()]
    hooks.append(tuple(len(getattr(nn.modules.module, f"_global_{kind}")) for kind in GLOBAL_HOOKS))
    modes = [m.training for m in model.modules()]
    overrides = [sorted(k for k in vars(m) if k == "forward" or k.startswith("canonizer")) for m in model.modules()]
    names = [name for name, _ in model.named_modules()]
    params = [p.detach().clone() for p in model.state_dict().values()]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    return hooks, modes, overrides, names, params, grads


def same_state(a: tuple, b: tuple) -> bool:
    tensors_equal = all(torch.equal(x, y) for x, y in zip(a[4], b[4]))
    grads_equal = all((x is None and y is None) or (x is not None and y is not None and torch.equal(x, y))
                      for x, y in zip(a[5], b[5]))
    return a[:4] == b[:4] and tensors_equal and grads_equal


def prepared(model: nn.Module) -> nn.Module:
    """Mixed train/eval modes and non-empty parameter grads, which must all come back unchanged."""
    model.train()
    next(iter(model.backbone.children())).eval()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    return model


def test_every_explainer_has_a_category():
    for name in EXPLAINERS.names():
        meta = EXPLAINERS.meta(name)
        assert meta["category"] in CATEGORIES and EXPLAINERS.get(name).category == meta["category"]
        assert meta["is_control"] == (meta["category"] == "control")
    categories = {EXPLAINERS.meta(n)["category"] for n in EXPLAINERS.names()}
    assert categories == set(CATEGORIES)


@pytest.mark.parametrize("name", EXPLAINERS.names())
def test_contract_and_side_effects(model, images, name, record_property):
    arch = model.arch
    model = prepared(model)
    before = side_effect_state(model)
    explainer = create_explainer(name)
    try:
        raw = explainer(model, images, torch.tensor(TARGETS))
    except ExplainerUnsupported as why:
        record_property("unsupported", str(why))
        assert (arch, name) in UNSUPPORTED, f"{name} on {arch} unexpectedly unsupported: {why}"
        assert str(why).strip() and UNSUPPORTED[(arch, name)] in str(why)
    else:
        assert (arch, name) not in UNSUPPORTED, f"{name} on {arch} should raise ExplainerUnsupported"
        assert raw.shape == (3, 1, 32, 32) and raw.dtype == torch.float32 and raw.device == images.device
        assert torch.isfinite(raw).all()
        view = explainer.unit_view(raw)
        assert view.min() >= 0 and view.max() <= 1
    assert same_state(side_effect_state(model), before), f"{name} left side effects on {arch}"


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("name", [n for n in EXPLAINERS.names() if not EXPLAINERS.meta(n)["is_control"]])
def test_side_effects_undone_when_the_model_raises(model, images, name):
    """An exception inside the forward pass (after the explainer set up its hooks) leaves nothing behind."""
    model = prepared(model)

    def explode(_module, _inputs, _output):
        raise Boom("raised inside the model")

    handle = model.backbone.get_classifier().register_forward_hook(explode)
    try:
        before = side_effect_state(model)
        with pytest.raises((Boom, ExplainerUnsupported)):
            create_explainer(name)(model, images, torch.tensor(TARGETS))
        assert same_state(side_effect_state(model), before), f"{name} left side effects after an error"
    finally:
        handle.remove()


@pytest.mark.parametrize("name", [n for n in EXPLAINERS.names() if not EXPLAINERS.meta(n)["is_control"]])
def test_out_of_range_target_raises(model, images, name):
    with pytest.raises((ValueError, IndexError, ExplainerUnsupported)):
        create_explainer(name)(model.eval(), images, torch.tensor([0, NUM_LOGITS, 1]))


# the random control draws fresh noise per call (independent of the images, see controls.py): a map of
# a batch is not the map of the same image alone, by design
@pytest.mark.parametrize("name", [n for n in EXPLAINERS.names() if n != "random"])
def test_multilabel_targets_explain_each_samples_own_class(model, images, name):
    """4 logits, targets [0,3,2]: the batch's map i equals explaining sample i alone for target i."""
    model = model.eval()
    explainer = create_explainer(name)
    targets = torch.tensor(TARGETS)
    try:
        batch = explainer(model, images, targets)
    except ExplainerUnsupported:
        pytest.skip(f"{name} unsupported on {model.arch}")
    one_by_one = torch.cat([explainer(model, images[i:i + 1], targets[i:i + 1]) for i in range(3)])
    scale = one_by_one.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
    assert ((batch - one_by_one).abs() / scale).max() < 1e-4
    if name not in TARGET_FREE and (model.arch, name) not in TARGET_FREE:  # the target is really used
        other = explainer(model, images[:1], torch.tensor([1]))
        assert not torch.allclose(other, batch[:1], rtol=1e-3, atol=1e-6 * float(scale[0]))
