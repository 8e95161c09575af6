"""Max- and avg-sensitivity: an explainer with a known answer, seeding, chunking and prediction changes."""

from __future__ import annotations

import math

import pytest
import torch

from harness.metrics.registry import get_metric
from harness.metrics.robustness import SensitivitySamples, avg_sensitivity, max_sensitivity, sensitivity_samples

B, N_SAMPLES, RADIUS = 5, 6, 0.1


def identity_explainer(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """e(x) = x: the sensitivity ratio of a sample is ||noise|| / ||x||."""
    return images.sum(1, keepdim=True)


@pytest.fixture
def images() -> torch.Tensor:
    return 0.2 + torch.rand(B, 1, 6, 6, generator=torch.Generator().manual_seed(0))


def test_identity_explainer_ratio_is_noise_norm_over_image_norm(images):
    targets = torch.zeros(B, dtype=torch.long)
    seen = []

    def recording(x, t):
        seen.append(x.clone())
        return identity_explainer(x, t)

    samples = sensitivity_samples(recording, images, targets, n_samples=N_SAMPLES, radius=RADIUS, batch_size=7,
                                  generator=torch.Generator().manual_seed(1))
    noisy = torch.cat(seen[1:]).view(N_SAMPLES, B, 1, 6, 6)  # first call: the reference maps
    noise = (noisy - images).transpose(0, 1).flatten(2).double()
    assert noise.abs().max() <= RADIUS + 1e-6 and noise.abs().max() > 0.9 * RADIUS  # fills the L-inf ball
    expected = noise.norm(dim=2) / images.flatten(1).double().norm(dim=1, keepdim=True)
    assert samples.ratios.shape == (B, N_SAMPLES) and samples.ratios.dtype == torch.float64
    assert torch.allclose(samples.ratios, expected, rtol=1e-5)
    assert samples.prediction_changed is None and samples.n_changed is None
    assert torch.allclose(samples.reduce("max"), expected.amax(1), rtol=1e-5)
    assert torch.allclose(samples.reduce("mean"), expected.mean(1), rtol=1e-5)


def test_seeded_reproducible_and_zero_radius_gives_zero(images):
    targets = torch.zeros(B, dtype=torch.long)
    run = lambda seed, **kw: max_sensitivity(identity_explainer, images, targets, n_samples=3,  # noqa: E731
                                             generator=torch.Generator().manual_seed(seed), **kw)
    assert torch.equal(run(5), run(5)) and not torch.equal(run(5), run(6))
    assert torch.equal(max_sensitivity(identity_explainer, images, targets, n_samples=2),
                       max_sensitivity(identity_explainer, images, targets, n_samples=2))  # default seed 0
    assert run(5, radius=0.0).eq(0).all()
    assert avg_sensitivity(identity_explainer, images, targets, radius=0.0).eq(0).all()
    inf = run(5, norm_numerator="inf", norm_denominator="inf")
    assert (inf > 0).all() and (inf <= RADIUS * 2 / 0.2 + 1e-6).all()


def test_zero_reference_map_gives_nan(images):
    targets = torch.zeros(B, dtype=torch.long)
    maps = identity_explainer(images, targets)
    maps[2] = 0
    value = avg_sensitivity(identity_explainer, images, targets, maps=maps, n_samples=2)
    assert math.isnan(value[2].item()) and not value[[0, 1, 3, 4]].isnan().any()


def test_prediction_change_is_reported_and_can_mask():
    ratios = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]], dtype=torch.float64)
    changed = torch.tensor([[False, False, False], [False, False, True], [True, True, True]])
    samples = SensitivitySamples(ratios, changed)
    assert samples.n_changed.tolist() == [0, 1, 3]
    assert samples.reduce("max").tolist() == [3.0, 3.0, 3.0]
    nan_max = samples.reduce("max", on_prediction_change="nan")
    assert nan_max[0].item() == 3.0 and nan_max[1:].isnan().all()
    excluded = samples.reduce("max", on_prediction_change="exclude")
    assert excluded[:2].tolist() == [3.0, 2.0] and math.isnan(excluded[2].item())
    excluded_mean = samples.reduce("mean", on_prediction_change="exclude")
    assert excluded_mean[:2].tolist() == [2.0, 1.5] and math.isnan(excluded_mean[2].item())
    with pytest.raises(ValueError, match="predict_fn"):
        SensitivitySamples(ratios).reduce("max", on_prediction_change="nan")
    with pytest.raises(ValueError):
        samples.reduce("max", on_prediction_change="drop")


def test_predict_fn_flags_changed_predictions(images):
    targets = torch.zeros(B, dtype=torch.long)
    threshold = images.flatten(1).mean(1) + 1e-4

    def predict(x):  # chunks of B hold one sample of every image: class 1 when brighter than the clean image
        above = x.flatten(1).mean(1) > threshold
        return torch.stack([(~above).double(), above.double()], dim=1)

    samples = sensitivity_samples(identity_explainer, images, targets, n_samples=8, radius=0.05, batch_size=B,
                                  predict_fn=predict)
    assert samples.prediction_changed.dtype == torch.bool and 0 < samples.n_changed.sum() < 8 * B
    value = max_sensitivity(identity_explainer, images, targets, n_samples=8, radius=0.05, batch_size=B,
                            predict_fn=predict, on_prediction_change="exclude")
    assert torch.allclose(value, samples.reduce("max", on_prediction_change="exclude"))


def test_registered():
    for name in ("max_sensitivity", "avg_sensitivity"):
        spec = get_metric(name)
        assert spec.category == "robustness" and spec.higher_is_better is False


def test_invalid_options(images):
    targets = torch.zeros(B, dtype=torch.long)
    with pytest.raises(ValueError):
        max_sensitivity(identity_explainer, images, targets, n_samples=0)
    with pytest.raises(ValueError, match="norm"):
        max_sensitivity(identity_explainer, images, targets, norm_numerator="l7")
