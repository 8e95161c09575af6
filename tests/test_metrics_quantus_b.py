"""Agreement with Quantus 0.6.0 for complexity, robustness, faithfulness and the SSIM similarity.

Every hyper-parameter that Quantus defaults differently from us is pinned; robustness metrics get
exactly our noise (Quantus' ``perturb_func`` replays the noisy images our explainer saw).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from harness.metrics.complexity import complexity, sparseness
from harness.metrics.faithfulness import deletion_curve
from harness.metrics.robustness import sensitivity_samples
from harness.metrics.structural import ssim

quantus = pytest.importorskip("quantus")

QUIET = {"disable_warnings": True, "display_progressbar": False}
B, SIDE, N_SAMPLES, RADIUS = 8, 16, 10, 0.2


def quiet_call(metric, **inputs) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(**inputs), dtype=np.float64)


@pytest.fixture(scope="module")
def tiny_cnn() -> nn.Module:
    with torch.random.fork_rng():  # seeded parameter init without touching the global RNG
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.Softplus(), nn.Conv2d(4, 4, 3, padding=1), nn.Softplus(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64, 3),
        ).eval()


@pytest.fixture(scope="module")
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(B, 1, SIDE, SIDE, generator=g), torch.arange(B) % 3


def input_gradient(model: nn.Module):
    def explain(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
        return grad

    return explain


def run_complexity_metric(metric_class, a: np.ndarray, **pinned) -> np.ndarray:
    x, y = np.zeros_like(a), np.zeros(a.shape[0], dtype=int)
    return quiet_call(metric_class(**pinned, **QUIET), model=None, x_batch=x, y_batch=y, a_batch=a.copy())


@pytest.fixture(scope="module")
def signed_maps() -> np.ndarray:
    rng = np.random.default_rng(0)  # per-image scales from 1 down to 1e-3, as raw gradient maps have
    return (rng.normal(size=(16, 1, 12, 12)) * 10.0 ** -rng.uniform(0, 3, (16, 1, 1, 1))).astype(np.float32)


def test_sparseness_and_complexity_equal_quantus_with_its_epsilon(signed_maps):
    a = signed_maps
    shifted = torch.from_numpy(np.abs(a).astype(np.float64) + 1e-7)  # Quantus adds 1e-7 before the Gini
    theirs = run_complexity_metric(quantus.Sparseness, a, abs=True, normalise=False)
    np.testing.assert_allclose(sparseness(shifted).numpy(), theirs, rtol=1e-6)
    theirs = run_complexity_metric(quantus.Complexity, a, abs=True, normalise=False)
    np.testing.assert_allclose(complexity(torch.from_numpy(a)).numpy(), theirs, rtol=1e-6)


@pytest.mark.parametrize("normalise", [False, True])
def test_sparseness_divergence_is_quantus_epsilon(signed_maps, normalise):
    """Quantus' epsilon makes its Gini scale-dependent: relative gap ``n 1e-7 / sum|a|`` on the map it sees."""
    a = signed_maps
    theirs = run_complexity_metric(quantus.Sparseness, a, abs=True, normalise=normalise)
    seen = np.abs(a) / np.abs(a).max() if normalise else np.abs(a)  # Quantus normalises by the batch max
    bound = a[0].size * 1e-7 / seen.reshape(len(a), -1).sum(1)
    ours = sparseness(torch.from_numpy(a)).numpy()
    assert np.all(np.abs(ours - theirs) <= 1.01 * bound * ours + 1e-7)
    assert ours.max() - ours.min() < 0.1  # ours is scale-invariant: Gaussian maps score alike


def test_all_zero_map_divergence():
    a = np.zeros((2, 1, 4, 4), dtype=np.float32)
    a[1, 0, 0, 0] = 1.0
    x, y = np.zeros_like(a), np.zeros(2, dtype=int)
    theirs = quiet_call(quantus.Sparseness(abs=True, normalise=False, **QUIET), model=None, x_batch=x,
                        y_batch=y, a_batch=a.copy())
    assert theirs[0] == pytest.approx(0.0)  # Quantus' +1e-7 makes an all-zero map "uniform"
    assert torch.isnan(sparseness(torch.from_numpy(a))[0])  # ours: undefined


def test_max_and_avg_sensitivity_equal_quantus_on_the_same_noise(tiny_cnn, batch, one_thread):
    images, targets = batch
    explain = input_gradient(tiny_cnn)
    maps = explain(images, targets)
    seen: list[torch.Tensor] = []

    def recording(x, t):
        seen.append(x.detach().clone())
        return explain(x, t)

    ours = sensitivity_samples(recording, images, targets, maps=maps, n_samples=N_SAMPLES, radius=RADIUS,
                               batch_size=3 * B, generator=torch.Generator().manual_seed(2))
    noisy = list(torch.cat(seen).view(N_SAMPLES, B, 1, SIDE, SIDE).numpy())
    assert np.abs(noisy[0] - images.numpy()).max() <= RADIUS + 1e-6

    def explain_numpy(model, inputs, targets, **kwargs):
        return explain(torch.as_tensor(inputs), torch.as_tensor(targets)).numpy()

    for reduce, metric_class in (("max", quantus.MaxSensitivity), ("mean", quantus.AvgSensitivity)):
        replay = iter(noisy)
        metric = metric_class(nr_samples=N_SAMPLES, lower_bound=RADIUS, normalise=False, abs=False,
                              return_nan_when_prediction_changes=False,
                              perturb_func=lambda arr, indices, **kw: next(replay).reshape(arr.shape), **QUIET)
        theirs = quiet_call(metric, model=tiny_cnn, x_batch=images.numpy(), y_batch=targets.numpy(),
                            a_batch=maps.numpy(), explain_func=explain_numpy, device="cpu", batch_size=B)
        expected = ours.reduce(reduce).numpy()
        assert np.all(np.abs(expected - theirs) <= 1e-3 * np.abs(theirs)), (reduce, expected, theirs)
        assert next(replay, None) is None  # Quantus drew exactly our samples


def test_deletion_curve_equals_quantus_pixel_flipping(tiny_cnn, batch, one_thread):
    images, targets = batch
    maps = torch.randn(images.shape, generator=torch.Generator().manual_seed(4))  # no ties
    n_steps, n = 32, SIDE * SIDE
    metric = quantus.PixelFlipping(features_in_step=n // n_steps, perturb_baseline=0.0, normalise=False, abs=False,
                                   return_auc_per_sample=False, **QUIET)  # the AUC path needs np.trapz
    theirs = quiet_call(metric, model=tiny_cnn, x_batch=images.numpy(), y_batch=targets.numpy(),
                        a_batch=maps.numpy(), device="cpu", softmax=True, batch_size=B)
    ours = deletion_curve(tiny_cnn, images, maps, targets, n_steps=n_steps, baseline=0.0).numpy()
    assert theirs.shape == (B, n_steps)  # Quantus omits the intact image (our point 0)
    np.testing.assert_allclose(ours[:, 1:], theirs, atol=1e-6)


def test_ssim_equals_quantus_similarity_function():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(4, 20, 20))
    b = a + rng.normal(size=a.shape)
    theirs = [quantus.functions.similarity_func.ssim(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(ssim(torch.from_numpy(a), torch.from_numpy(b)).numpy(), theirs, atol=1e-7)
