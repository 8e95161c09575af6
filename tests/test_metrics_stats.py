"""Seeded percentile bootstrap: reference computation, NaN accounting, AUROC resampling, paired differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.metrics import BootstrapResult, auroc, bootstrap_ci, bootstrap_statistic, paired_bootstrap


def test_bootstrap_ci_equals_reference_with_the_same_indices():
    values = torch.randn(50, generator=torch.Generator().manual_seed(0)).double()
    result = bootstrap_ci(values, n_boot=500, seed=3, alpha=0.1)
    index = torch.randint(0, 50, (500, 50), generator=torch.Generator().manual_seed(3)).numpy()
    means = values.numpy()[index].mean(1)
    assert result.estimate == pytest.approx(values.mean().item())
    assert result.low == pytest.approx(np.percentile(means, 5))
    assert result.high == pytest.approx(np.percentile(means, 95))
    assert (result.n, result.n_excluded, result.n_boot, result.alpha) == (50, 0, 500, 0.1)
    assert result == bootstrap_ci(values.tolist(), n_boot=500, seed=3, alpha=0.1)  # any sequence input


def test_bootstrap_ci_is_seeded_and_counts_nans():
    values = torch.tensor([0.1, float("nan"), 0.5, 0.9, float("nan"), 0.3])
    a, b = bootstrap_ci(values, seed=1), bootstrap_ci(values, seed=1)
    assert a == b and a != bootstrap_ci(values, seed=2)
    assert (a.n, a.n_excluded) == (4, 2)
    assert a.estimate == pytest.approx(0.45)
    assert a.low <= a.estimate <= a.high
    assert set(a.to_dict()) == {"estimate", "low", "high", "n", "n_excluded", "n_boot", "alpha", "n_groups"}


def test_bootstrap_ci_degenerate_inputs():
    none = bootstrap_ci(torch.tensor([float("nan")] * 3))
    assert math.isnan(none.estimate) and math.isnan(none.low) and (none.n, none.n_excluded) == (0, 3)
    one = bootstrap_ci([0.7])
    assert one.estimate == one.low == one.high == pytest.approx(0.7)
    with pytest.raises(ValueError):
        bootstrap_ci([1.0, 2.0], alpha=1.5)


def test_chunked_index_matrix_matches_single_draw(monkeypatch):
    import harness.metrics.stats as stats

    values = torch.rand(40, generator=torch.Generator().manual_seed(5))
    full = bootstrap_ci(values, n_boot=100, seed=0)
    monkeypatch.setattr(stats, "_MAX_CHUNK_ELEMENTS", 40 * 7)
    chunked = bootstrap_ci(values, n_boot=100, seed=0)
    # torch's CPU generator draws the same stream in chunks: the result does not depend on the chunk size
    assert chunked == full


def test_bootstrap_statistic_auroc_batched_equals_loop():
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(60, generator=g) < 0.3).long()
    scores = (labels + torch.randn(60, generator=g)).div(3).round(decimals=1)  # ties
    loop = bootstrap_statistic(auroc, scores, labels, n_boot=300, seed=4)
    fast = bootstrap_statistic(auroc, scores, labels, n_boot=300, seed=4, batched=True)
    assert isinstance(loop, BootstrapResult)
    assert loop.estimate == pytest.approx(auroc(scores, labels).item())
    assert (loop.low, loop.high, loop.n_boot) == pytest.approx((fast.low, fast.high, fast.n_boot))
    assert loop.low < loop.estimate < loop.high


def test_bootstrap_statistic_drops_single_class_resamples_and_nan_rows():
    scores = torch.tensor([0.9, 0.2, 0.3, 0.4, 0.1, 0.6, 0.7, float("nan")])
    labels = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1])  # one positive left after the NaN row goes
    result = bootstrap_statistic(auroc, scores, labels, n_boot=400, seed=0)
    assert (result.n, result.n_excluded) == (7, 1)
    assert result.estimate == 1.0
    assert 0 < result.n_boot < 400  # resamples without the positive are dropped, not counted as NaN
    assert result.low == result.high == 1.0
    with pytest.raises(ValueError, match="first dimension"):
        bootstrap_statistic(auroc, scores, labels[:3])


def correlated_pair(seed: int = 0, n: int = 80):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, generator=g).double()  # per-image difficulty shared by both models
    a = base + 0.03 + 0.02 * torch.randn(n, generator=g).double()
    b = base + 0.02 * torch.randn(n, generator=g).double()
    return a, b


def test_paired_bootstrap_equals_reference_with_shared_indices():
    a, b = correlated_pair()
    result = paired_bootstrap(a, b, n_boot=400, seed=5, alpha=0.1)
    index = torch.randint(0, 80, (400, 80), generator=torch.Generator().manual_seed(5)).numpy()
    diffs = a.numpy()[index].mean(1) - b.numpy()[index].mean(1)  # the same rows for both sides
    assert result.estimate == pytest.approx(float(a.mean() - b.mean()), abs=1e-12)
    assert result.low == pytest.approx(np.percentile(diffs, 5), abs=1e-12)
    assert result.high == pytest.approx(np.percentile(diffs, 95), abs=1e-12)
    assert (result.n, result.n_boot, result.alpha) == (80, 400, 0.1)
    assert paired_bootstrap(a, b).n_boot == 1000  # the default replicate count
    assert paired_bootstrap(a.tolist(), b.tolist(), n_boot=400, seed=5, alpha=0.1) == result  # lists stay float64
    precise = [0.1 + 1e-12 * i for i in range(20)]
    assert bootstrap_ci(precise).estimate == pytest.approx(float(np.mean(precise)), abs=1e-15)


def test_paired_bootstrap_finds_a_difference_that_separate_cis_miss():
    a, b = correlated_pair()
    paired = paired_bootstrap(a, b, seed=0)
    ci_a, ci_b = bootstrap_ci(a, seed=0), bootstrap_ci(b, seed=0)
    assert ci_a.low < ci_b.high  # the separate intervals overlap ...
    assert paired.low > 0  # ... but the paired difference excludes 0: the shared difficulty cancels


def test_paired_bootstrap_is_antisymmetric_and_excludes_nan_pairs():
    a, b = correlated_pair(1, n=30)
    a[3], b[7] = float("nan"), float("nan")
    ab, ba = paired_bootstrap(a, b, seed=2), paired_bootstrap(b, a, seed=2)
    assert (ab.n, ab.n_excluded) == (28, 2)
    assert ab.estimate == pytest.approx(-ba.estimate, abs=1e-12)
    assert (ab.low, ab.high) == pytest.approx((-ba.high, -ba.low), abs=1e-12)


def test_paired_bootstrap_of_auroc_batched_equals_loop():
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(100, generator=g) < 0.4).long()
    strong = (labels + 0.5 * torch.randn(100, generator=g)).double()
    weak = (labels + 3.0 * torch.randn(100, generator=g)).double()
    fast = paired_bootstrap(strong, weak, labels, statistic=auroc, batched=True, n_boot=300, seed=1)
    loop = paired_bootstrap(strong, weak, labels, statistic=auroc, n_boot=300, seed=1)
    assert fast.estimate == pytest.approx(float(auroc(strong, labels) - auroc(weak, labels)), abs=1e-12)
    assert (fast.low, fast.high, fast.n_boot) == pytest.approx((loop.low, loop.high, loop.n_boot), abs=1e-12)
    assert fast.low > 0


# --- the cluster (patient) bootstrap


def _patients(n_patients: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image values with a strong patient effect, 1-4 images per patient, and the patient ids."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 5, (n_patients,), generator=g)
    ids = torch.repeat_interleave(torch.arange(n_patients), counts)
    effect = torch.randn(n_patients, generator=g)[ids]
    return (effect + 0.2 * torch.randn(ids.numel(), generator=g)).double(), ids


def test_duplicating_every_image_widens_nothing_under_the_patient_bootstrap():
    values, ids = _patients(60)
    doubled, doubled_ids = values.repeat(2), ids.repeat(2)
    once = bootstrap_ci(values, groups=ids, n_boot=2000, seed=4)
    twice = bootstrap_ci(doubled, groups=doubled_ids, n_boot=2000, seed=4)
    assert (once.low, once.high) == pytest.approx((twice.low, twice.high), abs=1e-12)
    assert (twice.n, twice.n_groups) == (2 * values.numel(), 60)
    # the image bootstrap treats the copies as new evidence: its interval narrows (by about 1/sqrt(2))
    image_once = bootstrap_ci(values, n_boot=2000, seed=4)
    image_twice = bootstrap_ci(doubled, n_boot=2000, seed=4)
    assert image_twice.high - image_twice.low < 0.8 * (image_once.high - image_once.low)


def test_patient_bootstrap_is_wider_than_the_image_bootstrap_for_correlated_images():
    values, ids = _patients(80, seed=1)
    patients = bootstrap_ci(values, groups=ids, n_boot=2000, seed=0)
    images = bootstrap_ci(values, n_boot=2000, seed=0)
    assert patients.estimate == pytest.approx(images.estimate)
    assert patients.high - patients.low > 1.2 * (images.high - images.low)


def test_cluster_bootstrap_of_the_mean_equals_a_reference_loop():
    values, ids = _patients(30, seed=2)
    result = bootstrap_ci(values, groups=ids, n_boot=300, seed=9)
    index = torch.randint(0, 30, (300, 30), generator=torch.Generator().manual_seed(9))
    reference = [torch.cat([values[ids == c] for c in row]).mean().item() for row in index.tolist()]
    assert result.low == pytest.approx(np.percentile(reference, 2.5))
    assert result.high == pytest.approx(np.percentile(reference, 97.5))


def test_patient_bootstrap_of_auroc_keeps_patients_together_and_counts_them():
    values, ids = _patients(50, seed=3)
    labels = (values > 0).long()
    scores = values + 0.8 * torch.randn(values.numel(), generator=torch.Generator().manual_seed(1)).double()
    once = bootstrap_statistic(auroc, scores, labels, groups=ids, n_boot=300, seed=0)
    twice = bootstrap_statistic(auroc, scores.repeat(2), labels.repeat(2), groups=ids.repeat(2), n_boot=300, seed=0)
    assert (once.low, once.high) == pytest.approx((twice.low, twice.high), abs=1e-9)
    assert once.n_groups == 50 and once.n == values.numel()
    single = bootstrap_statistic(auroc, scores, labels, groups=torch.arange(values.numel()), n_boot=300, seed=0,
                                 batched=True)
    assert single == bootstrap_statistic(auroc, scores, labels, n_boot=300, seed=0, batched=True) or \
        single.low == pytest.approx(bootstrap_statistic(auroc, scores, labels, n_boot=300, seed=0, batched=True).low)


def test_groups_must_match_the_values():
    with pytest.raises(ValueError, match="one cluster id per value"):
        bootstrap_ci([1.0, 2.0], groups=[0])
    with pytest.raises(TypeError, match="integer ids"):
        bootstrap_ci([1.0, 2.0], groups=[0.5, 1.5])


def test_nan_values_drop_out_of_their_patient():
    values = torch.tensor([1.0, float("nan"), 3.0, 5.0])
    result = bootstrap_ci(values, groups=torch.tensor([0, 0, 1, 2]), n_boot=200, seed=0)
    assert (result.n, result.n_excluded, result.n_groups) == (3, 1, 3)
    assert result.estimate == pytest.approx(3.0)
