"""Explanation checks written as ordinary (property-based) tests.

Run with the suites: ``pytest suites/ --model resnet18``. The fixtures come from the xai-harness plugin
and are bound to the model under test (one test per ``--model``), sharing its loaded weights, data,
predictions and maps with the YAML suite:

* ``xai_model``: the ModelContext (``.dataset(split)``, ``.probs(split)``, ``.maps(explainer, split)``...);
* ``model``, ``dataset``: the ``nn.Module`` and its test ImageSet;
* ``explain(explainer, images=None, ...)``: maps (cached for the split, fresh for given images);
* ``check(name, explainer, require=..., **params)``: any registered check, recorded in the report.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.explain.context import predict_probs
from harness.checks.localisation import dilate_mask
from harness.data import strategies
from harness.metrics import pointing_game, spearman

N_IMAGES = 24
# Like a YAML suite's ``datasets:``: models trained on other data (the histopathology probes) skip, with the reason.
pytestmark = pytest.mark.xai_datasets("synth-cxr", "siim-acr", "burned-token")


@pytest.fixture(autouse=True)
def binary_model(xai_model):
    """These examples read one binary label per image; a multi-label model skips them, with the reason."""
    if xai_model.multilabel:
        pytest.skip(f"{xai_model.name} is multi-label: these examples read one binary label per image "
                    "(the cxr14 suite covers multi-label models)")


def positives(dataset) -> torch.Tensor:
    return torch.nonzero(dataset.labels == 1).flatten()[:N_IMAGES]


# The model is loaded once per run and never mutated, so reusing it across examples is safe.
@settings(max_examples=5, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(noise=strategies.gaussian_noise(max_sigma=0.02), seed=st.integers(0, 2**16))
def test_gradcam_is_stable_under_small_noise(model, dataset, explain, noise, seed):
    """For any noise up to sigma 0.02 that keeps the prediction, Grad-CAM keeps its ranking (mean rho >= 0.8)."""
    idx = positives(dataset)
    images = dataset.as_float()[idx]
    noisy = noise.apply(images, torch.Generator().manual_seed(seed))
    kept = (predict_probs(model, images, 64) >= 0.5) == (predict_probs(model, noisy, 64) >= 0.5)
    similarity = spearman(explain("gradcam")[idx], explain("gradcam", noisy))[kept]
    assert similarity.nanmean() >= 0.8, f"mean Spearman {similarity.nanmean():.3f} under {noise!r}"


def test_true_positives_point_near_the_lesion(xai_model, dataset, explain):
    """The gradient maximum of most true positives lies within 4 px of the lesion (pointing game
    with tolerance, Zhang et al. 2018)."""
    idx = torch.nonzero((dataset.labels == 1) & (xai_model.probs("test") >= 0.5)).flatten()
    hits = pointing_game(explain("gradient", unit=True)[idx], dilate_mask(dataset.lesion_masks[idx], 4))
    assert hits.nanmean() >= 0.5, f"only {hits.nanmean():.0%} of {idx.numel()} true positives point near the lesion"


def test_registered_checks_run_from_python(check):
    """Any check of the YAML suites, called as a function and gated on its CI (recorded in the report)."""
    check("auroc", require="ci_low >= 0.85")
    check("model_randomisation", "gradient", require="ci_high <= 0.5", n_images=16)
