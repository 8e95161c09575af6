"""Agreement with Quantus 0.6.0 on random inputs (its documented divergences are tested too)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from harness.metrics import pointing_game, relevance_mass, relevance_rank

quantus = pytest.importorskip("quantus")

# Pinned hyper-parameters: no abs, no normalisation (Quantus' defaults normalise by the max).
PINNED = {"abs": False, "normalise": False, "disable_warnings": True, "display_progressbar": False}


def run_quantus(metric_class, a: np.ndarray, s: np.ndarray) -> np.ndarray:
    x = np.zeros_like(a, dtype=np.float32)
    y = np.zeros(a.shape[0], dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = metric_class(**PINNED)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)
    return np.asarray(scores, dtype=np.float64)


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    a = rng.normal(size=(64, 1, 12, 12)).astype(np.float32)  # signed, continuous: no ties
    s = (rng.random((64, 1, 12, 12)) < rng.random((64, 1, 1, 1))).astype(np.float32)
    s[:, :, 0, 0] = 1.0  # non-empty masks
    return a, s


def test_pointing_game_equals_quantus(batch):
    a, s = batch
    ours = pointing_game(torch.from_numpy(a), torch.from_numpy(s)).numpy()
    theirs = run_quantus(quantus.PointingGame, a, s)
    assert 0 < ours.mean() < 1
    np.testing.assert_array_equal(ours, theirs)


def test_relevance_mass_equals_quantus_on_nonnegative_maps(batch):
    a, s = batch
    positive = np.abs(a)
    ours = relevance_mass(torch.from_numpy(positive), torch.from_numpy(s)).numpy()
    np.testing.assert_allclose(ours, run_quantus(quantus.RelevanceMassAccuracy, positive, s), atol=1e-6)


def test_relevance_rank_equals_quantus(batch):
    a, s = batch
    ours = relevance_rank(torch.from_numpy(a), torch.from_numpy(s)).numpy()
    np.testing.assert_allclose(ours, run_quantus(quantus.RelevanceRankAccuracy, a, s), atol=1e-12)


def test_documented_divergences(batch):
    a, s = batch
    empty = np.zeros_like(s[:2])
    assert math.isnan(pointing_game(torch.from_numpy(a[:2]), torch.from_numpy(empty))[0].item())
    assert run_quantus(quantus.PointingGame, a[:2], empty)[0] == 1.0  # Quantus: an empty mask is a hit
    # Signed maps: Quantus' mass sums signed values (can leave [0,1]); ours counts positive relevance.
    theirs = run_quantus(quantus.RelevanceMassAccuracy, a, s)
    ours = relevance_mass(torch.from_numpy(a), torch.from_numpy(s)).numpy()
    assert ((ours >= 0) & (ours <= 1)).all() and not ((theirs >= 0) & (theirs <= 1)).all()
