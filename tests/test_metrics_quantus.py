"""Agreement with Quantus 0.6.0 on random inputs (its documented divergences are tested too)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from harness.metrics import localisation_auc, pointing_game, relevance_mass, relevance_rank, top_k_intersection

quantus = pytest.importorskip("quantus")

# Pinned hyper-parameters: no abs, no normalisation (Quantus' defaults normalise by the max).
PINNED = {"abs": False, "normalise": False, "disable_warnings": True, "display_progressbar": False}


def run_quantus(metric_class, a: np.ndarray, s: np.ndarray, **options) -> np.ndarray:
    x = np.zeros_like(a, dtype=np.float32)
    y = np.zeros(a.shape[0], dtype=int)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        scores = metric_class(**PINNED, **options)(model=None, x_batch=x, y_batch=y, a_batch=a, s_batch=s)
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


def test_localisation_auc_equals_quantus_auc(batch):
    a, s = batch
    ours = localisation_auc(torch.from_numpy(a), torch.from_numpy(s)).numpy()
    theirs = run_quantus(quantus.AUC, a, s)
    assert 0.3 < ours.mean() < 0.7  # random maps: near chance
    np.testing.assert_allclose(ours, theirs, atol=1e-12)
    tied = np.round(a, 0)  # few levels: many ties, both count a tied pair as 1/2
    np.testing.assert_allclose(localisation_auc(torch.from_numpy(tied), torch.from_numpy(s)).numpy(),
                               run_quantus(quantus.AUC, tied, s), atol=1e-12)
    full = np.ones_like(s[:2])  # one class only: NaN in both
    assert np.isnan(localisation_auc(torch.from_numpy(a[:2]), torch.from_numpy(full)).numpy()).all()
    assert np.isnan(run_quantus(quantus.AUC, a[:2], full)).all()


@pytest.mark.parametrize("k", [1, 10, 143])
@pytest.mark.parametrize("concept_influence", [False, True])
def test_top_k_intersection_equals_quantus(batch, k, concept_influence):
    a, s = batch
    ours = top_k_intersection(torch.from_numpy(a), torch.from_numpy(s), k=k,
                              concept_influence=concept_influence).numpy()
    theirs = run_quantus(quantus.TopKIntersection, a, s, k=k, concept_influence=concept_influence)
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_empty_masks_are_nan_in_both_for_auc_and_top_k(batch):
    a, s = batch
    empty = np.zeros_like(s[:2])
    for ours, theirs in [
        (localisation_auc(torch.from_numpy(a[:2]), torch.from_numpy(empty)), run_quantus(quantus.AUC, a[:2], empty)),
        (top_k_intersection(torch.from_numpy(a[:2]), torch.from_numpy(empty), k=5),
         run_quantus(quantus.TopKIntersection, a[:2], empty, k=5)),
    ]:
        assert np.isnan(ours.numpy()).all() and np.isnan(theirs).all()


def test_documented_divergences(batch):
    a, s = batch
    empty = np.zeros_like(s[:2])
    assert math.isnan(pointing_game(torch.from_numpy(a[:2]), torch.from_numpy(empty))[0].item())
    assert run_quantus(quantus.PointingGame, a[:2], empty)[0] == 1.0  # Quantus: an empty mask is a hit
    # Signed maps: Quantus' mass sums signed values (can leave [0,1]); ours counts positive relevance.
    theirs = run_quantus(quantus.RelevanceMassAccuracy, a, s)
    ours = relevance_mass(torch.from_numpy(a), torch.from_numpy(s)).numpy()
    assert ((ours >= 0) & (ours <= 1)).all() and not ((theirs >= 0) & (theirs <= 1)).all()
    # Tied maxima: ours takes the first arg-max only (CheXlocalize), Quantus any maximum.
    tied = np.zeros((1, 1, 4, 4), dtype=np.float32)
    tied[0, 0, 0, 0] = tied[0, 0, 3, 3] = 1.0
    corner = np.zeros_like(tied)
    corner[0, 0, 3, 3] = 1.0
    assert pointing_game(torch.from_numpy(tied), torch.from_numpy(corner)).item() == 0.0
    assert run_quantus(quantus.PointingGame, tied, corner)[0] == 1.0
