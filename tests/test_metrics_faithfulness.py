"""Deletion and insertion curves: a linear model with a hand-computed curve, ties, baselines, true vs random maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from harness.metrics.faithfulness import (
    curve_auc,
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
    pixel_ranks,
)
from harness.metrics.registry import get_metric


class Linear(nn.Module):
    """Logits ``[w . x, 0]``: class 0's logit is linear in the pixels."""

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.weights = weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = (x * self.weights).flatten(1).sum(1)
        return torch.stack([score, torch.zeros_like(score)], dim=1)


def test_hand_computed_linear_curves():
    model = Linear(torch.tensor([[4.0, 3.0], [2.0, 1.0]])).eval()
    image = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    saliency = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]])  # removal order: pixels 0, 1, 2, 3
    target = torch.tensor([0])
    deletion = deletion_curve(model, image, saliency, target, n_steps=4, score="logit")
    # w.x = 4 + 6 + 6 + 4 = 20, then remove 4*1, 3*2, 2*3, 1*4
    assert deletion.tolist() == [[20.0, 16.0, 10.0, 4.0, 0.0]]
    assert curve_auc(deletion).item() == pytest.approx((10 + 16 + 10 + 4 + 0) / 4)
    insertion = insertion_curve(model, image, saliency, target, n_steps=4, baseline=0.0, score="logit")
    assert insertion.tolist() == [[0.0, 4.0, 10.0, 16.0, 20.0]]
    two_steps = deletion_curve(model, image, saliency, target, n_steps=2, baseline=1.0, score="logit")
    assert two_steps.tolist() == [[20.0, 20 - 4 - 6 + 4 + 3, 10.0]]  # baseline 1: each pixel becomes w_i
    probabilities = deletion_curve(model, image, saliency, target, n_steps=4)
    assert torch.allclose(probabilities, torch.sigmoid(deletion))  # softmax of [s, 0] is sigmoid(s)
    assert probabilities.dtype == torch.float64


def test_uneven_steps_use_floor_of_k_n_over_steps():
    model = Linear(torch.ones(1, 1, 1, 5)).eval()
    image = torch.ones(1, 1, 1, 5)
    saliency = torch.arange(5.0).view(1, 1, 1, 5)
    curve = deletion_curve(model, image, saliency, torch.tensor([0]), n_steps=3, score="logit")
    assert curve.tolist() == [[5.0, 4.0, 2.0, 0.0]]  # floor(5/3)=1, floor(10/3)=3, 5 removed


def test_ties_are_removed_in_row_major_order():
    maps = torch.tensor([[[[1.0, 2.0, 2.0], [0.0, 2.0, 1.0]]]])
    assert pixel_ranks(maps).tolist() == [[3, 0, 1, 5, 2, 4]]
    model = Linear(torch.tensor([[[[1.0, 10.0, 100.0], [0.0, 1000.0, 0.0]]]])).eval()
    curve = deletion_curve(model, torch.ones(1, 1, 2, 3), maps, torch.tensor([0]), n_steps=6, score="logit")
    assert curve[0, :4].tolist() == [1111.0, 1101.0, 1001.0, 1.0]


def test_blur_baseline_is_rise_gaussian_with_mirrored_borders():
    images = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    maps = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    model = Linear(torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)).eval()
    first = insertion_curve(model, images, maps, torch.tensor([0, 0]), n_steps=4, score="logit")[:, 0]
    x = np.arange(11) - 5
    kernel = np.exp(-0.5 * (x / 5.0) ** 2)
    blurred = ndimage.correlate(images.numpy(), (kernel[:, None] * kernel[None, :] / kernel.sum() ** 2)[None, None])
    expected = (blurred * model.weights.numpy()).reshape(2, -1).sum(1)
    np.testing.assert_allclose(first.numpy(), expected, atol=1e-10)


@pytest.fixture(scope="module")
def linear_task():
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(1, 1, 16, 16, generator=g) * 0.3
    images = torch.rand(8, 1, 16, 16, generator=g)
    return Linear(weights).eval(), images, torch.zeros(8, dtype=torch.long)


def test_true_contributions_beat_a_random_map(linear_task):
    model, images, targets = linear_task
    true_maps = images * model.weights  # each pixel's exact contribution to the logit
    random_maps = torch.rand(images.shape, generator=torch.Generator().manual_seed(9))
    options = dict(n_steps=16, batch_size=20)
    assert (deletion_auc(model, images, true_maps, targets, **options)
            < deletion_auc(model, images, random_maps, targets, **options)).all()
    assert (insertion_auc(model, images, true_maps, targets, baseline=0.0, **options)
            > insertion_auc(model, images, random_maps, targets, baseline=0.0, **options)).all()
    weights_only = model.weights.expand_as(images)  # the model's weights (images are non-negative)
    assert (deletion_auc(model, images, weights_only, targets, **options)
            < deletion_auc(model, images, random_maps, targets, **options)).all()


def test_chunking_does_not_change_the_curve_and_nan_maps_give_nan(linear_task):
    model, images, targets = linear_task
    maps = torch.rand(images.shape, generator=torch.Generator().manual_seed(3))
    reference = deletion_curve(model, images, maps, targets, n_steps=8, batch_size=1000)
    assert torch.allclose(deletion_curve(model, images, maps, targets, n_steps=8, batch_size=5), reference)
    maps[3, 0, 2, 2] = float("nan")
    curve = deletion_curve(model, images, maps, targets, n_steps=8)
    assert curve[3].isnan().all() and not curve[[0, 1, 2, 4, 5, 6, 7]].isnan().any()
    baseline = torch.full_like(images, 0.5)
    assert torch.allclose(deletion_curve(model, images, maps, targets, n_steps=8, baseline=baseline),
                          deletion_curve(model, images, maps, targets, n_steps=8, baseline=0.5), equal_nan=True)


def test_invalid_inputs(linear_task):
    model, images, targets = linear_task
    maps = torch.rand(images.shape)
    with pytest.raises(ValueError, match="n_steps"):
        deletion_curve(model, images, maps, targets, n_steps=0)
    with pytest.raises(ValueError, match="map"):
        deletion_curve(model, images, maps[:, :, :8], targets)
    with pytest.raises(ValueError, match="baseline"):
        deletion_curve(model, images, maps, targets, baseline="mean")
    with pytest.raises(ValueError, match="training mode"):
        deletion_curve(Linear(model.weights).train(), images, maps, targets)
    with pytest.raises(ValueError, match="curves"):
        curve_auc(torch.ones(3))


def test_registered():
    deletion, insertion = get_metric("deletion_auc"), get_metric("insertion_auc")
    assert deletion.category == insertion.category == "faithfulness"
    assert deletion.higher_is_better is False and insertion.higher_is_better is True
