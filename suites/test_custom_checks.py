"""Explanation checks written as ordinary (property-based) tests.

Run with the suites: ``pytest suites/ --model resnet18``. ``xai_model`` is the model under test
(one test per ``--model``), sharing its loaded weights, data, predictions and maps with the YAML suite.
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.checks.context import explain_batched, predict_probs
from harness.data.perturbations import gaussian_noise
from harness.metrics import spearman

N_IMAGES = 24


def positives(xai_model, split: str = "test") -> torch.Tensor:
    return torch.nonzero(xai_model.dataset(split).labels == 1).flatten()[:N_IMAGES]


# xai_model is loaded once per run and never mutated, so reusing it across examples is safe
@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sigma=st.floats(min_value=0.0, max_value=0.01), seed=st.integers(0, 2**16))
def test_gradcam_is_stable_under_small_noise(xai_model, sigma, seed):
    """For any noise up to sigma 0.01 that keeps the prediction, Grad-CAM keeps its ranking (rho >= 0.7)."""
    idx = positives(xai_model)
    images = xai_model.images("test")[idx]
    noisy = gaussian_noise(sigma=sigma).apply(images, torch.Generator().manual_seed(seed))
    kept = (xai_model.probs("test")[idx] >= 0.5) == (predict_probs(xai_model.model, noisy, 64) >= 0.5)
    before = xai_model.maps("gradcam", "test")[idx]
    after = explain_batched(xai_model.model, xai_model.explainer("gradcam"), noisy, 64)
    similarity = spearman(before, after)[kept]
    assert similarity.nanmean() >= 0.7, f"mean Spearman {similarity.nanmean():.3f} under sigma={sigma:.4f}"


def test_positive_predictions_are_explained_on_the_lesion_side(xai_model):
    """The Grad-CAM maximum of a true positive lies in the lesion's half of the chest (left/right)."""
    data = xai_model.dataset("test")
    idx = positives(xai_model)
    idx = idx[xai_model.probs("test")[idx] >= 0.5]
    maps = xai_model.unit_maps("gradcam", "test")[idx, 0]
    width = maps.shape[-1]
    peak_col = maps.flatten(1).argmax(1) % width
    lesion_col = data.lesion_masks[idx, 0].float().sum(1).argmax(1)
    same_side = ((peak_col < width // 2) == (lesion_col < width // 2)).float().mean()
    assert same_side >= 0.7, f"only {same_side:.0%} of true positives peak on the lesion's side"
