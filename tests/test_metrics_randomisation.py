"""Randomisation metrics: units in forward order, MPRT and random logit, pinned to Quantus 0.6.0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.explain import create_explainer
from harness.metrics.randomisation import (
    model_parameter_randomisation,
    off_targets,
    random_logit,
    randomisation_units,
)
from harness.models import create_model

pytestmark = pytest.mark.usefixtures("one_thread")


def gradient_fn(model, images, targets):
    return create_explainer("gradient")(model, images, targets)


def random_fn(model, images, targets):
    return create_explainer("random")(model, images, targets)


def tiny_cnn():
    torch.manual_seed(0)
    return create_model("test_resnet", img_size=32).eval()


def test_module_units_add_the_vit_tokens_quantus_never_randomises():
    vit = create_model("test_vit", img_size=32)
    units = randomisation_units(vit, granularity="module")
    model_level = [u for u in units if "model-level" in u.name]
    assert model_level and {"backbone.cls_token", "backbone.pos_embed"} <= set(model_level[0].params)
    assert units.index(model_level[0]) < 3  # registered before the blocks: randomised last when cascading
    every = {n for n, _ in vit.named_parameters()}
    assert every == {p for u in units for p in u.params}


def test_cascading_gradient_changes_but_a_control_does_not():
    model, images = tiny_cnn(), torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 1, 0])
    grad = model_parameter_randomisation(model, gradient_fn, images, targets, seed=0)
    control = model_parameter_randomisation(model, random_fn, images, targets, seed=0)
    assert torch.allclose(control.last, torch.ones(4, dtype=torch.float64))
    assert grad.last.abs().mean() < 0.5 and len(grad.layers) == grad.similarity.shape[0]
    assert grad.layers[0].endswith("fc")  # top-down: the head first


def test_independent_order_restores_the_model_between_steps_and_leaves_the_original_alone():
    model, images = tiny_cnn(), torch.rand(2, 1, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = model_parameter_randomisation(model, gradient_fn, images, torch.tensor([1, 1]), order="independent")
    assert result.layers[0].startswith("backbone.conv1")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.isfinite(result.similarity).all()


def test_mprt_matches_quantus_layer_by_layer():
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn()
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([1, 0, 1])
    a = gradient_fn(model, x, y)

    def explain_func(model, inputs, targets, **kwargs):
        inputs, targets = torch.as_tensor(inputs), torch.as_tensor(targets)
        return gradient_fn(model, inputs, targets).detach().numpy()

    metric = quantus.MPRT(similarity_func=quantus.similarity_func.correlation_spearman, layer_order="top_down",
                          seed=42, abs=False, normalise=False, disable_warnings=True)
    theirs = metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(), explain_func=explain_func,
                    device="cpu", channel_first=True)
    theirs.pop("original")
    ours = model_parameter_randomisation(model, gradient_fn, x, y, granularity="module", seed=43, reseed="constant",
                                         reference=a)
    module_steps = [i for i, name in enumerate(ours.layers) if "model-level" not in name]
    assert [ours.layers[i] for i in module_steps] == list(theirs)
    got = ours.similarity[module_steps].numpy()
    assert np.allclose(got, np.array(list(theirs.values())), atol=1e-6)


def test_off_targets_are_uniform_over_the_other_classes():
    targets = torch.tensor([0, 1, 2, 3] * 500)
    other = off_targets(targets, 4, torch.Generator().manual_seed(0))
    assert not bool((other == targets).any())
    counts = torch.bincount(other[targets == 0], minlength=4)
    assert counts[0] == 0 and counts[1:].min() > 130


def test_random_logit_matches_quantus_with_the_same_off_classes():
    quantus = pytest.importorskip("quantus")
    model = tiny_cnn()
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([1, 0, 1, 1])
    a = gradient_fn(model, x, y)

    def explain_func(model, inputs, targets, **kwargs):
        return gradient_fn(model, torch.as_tensor(inputs), torch.as_tensor(targets)).detach().numpy()

    metric = quantus.RandomLogit(num_classes=2, seed=7, similarity_func=quantus.similarity_func.correlation_spearman,
                                 abs=False, normalise=False, disable_warnings=True)
    theirs = np.array(metric(model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy(),
                             explain_func=explain_func, device="cpu", channel_first=True))
    ours = random_logit(model, gradient_fn, x, y, num_classes=2, reference=a)  # 2 classes: the other one
    assert np.allclose(ours.numpy(), theirs, atol=1e-6)
    with pytest.raises(ValueError, match="differ"):
        random_logit(model, gradient_fn, x, y, num_classes=2, other=y)


def constant_fn(model, images, targets):
    return create_explainer("constant")(model, images, targets)


def test_a_constant_map_counts_as_unchanged_not_undefined():
    """Spearman of two constant maps is NaN; the randomisation tests must still fail a constant explainer (1.0)."""
    model, images = tiny_cnn(), torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([1, 0, 1])
    for order in ("cascading", "independent"):
        result = model_parameter_randomisation(model, constant_fn, images, targets, order=order)
        assert torch.equal(result.similarity, torch.ones_like(result.similarity))
    sims = random_logit(model, constant_fn, images, targets, num_classes=2)
    assert torch.equal(sims, torch.ones(3, dtype=torch.float64))


def test_unchanged_is_identical_keeps_real_values_and_one_sided_nan():
    from harness.metrics.randomisation import unchanged_is_identical
    from harness.metrics.similarity import spearman

    compare = unchanged_is_identical(spearman)
    a = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    b = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    b[1], b[2] = a[1], 0.5  # row 1 unchanged, row 2 constant on one side only
    out = compare(a, b)
    assert out[0] == pytest.approx(float(spearman(a[:1], b[:1])[0]))
    assert out[1] == 1.0 and out[2].isnan()
