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
from harness.checks.localisation import dilate_mask
from harness.metrics import pointing_game, spearman

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


def test_true_positives_point_near_the_lesion(xai_model):
    """The gradient maximum of most true positives lies within 4 px of the lesion (pointing game
    with tolerance, Zhang et al. 2018)."""
    data = xai_model.dataset("test")
    idx = torch.nonzero((data.labels == 1) & (xai_model.probs("test") >= 0.5)).flatten()
    maps = xai_model.unit_maps("gradient", "test")[idx]
    hits = pointing_game(maps, dilate_mask(data.lesion_masks[idx], 4))
    assert hits.nanmean() >= 0.5, f"only {hits.nanmean():.0%} of {idx.numel()} true positives point near the lesion"
