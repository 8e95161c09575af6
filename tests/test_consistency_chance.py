"""Chance-corrected map agreement (checkpoint and seed consistency) against a scipy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from harness.checks.consistency import chance_corrected_agreement


def reference(a: np.ndarray, b: np.ndarray, shifts: list[int]) -> np.ndarray:
    n = len(a)
    out = []
    for i in range(n):
        raw = spearmanr(a[i].ravel(), b[i].ravel())[0]
        chance = np.mean([spearmanr(a[i].ravel(), b[(i + k) % n].ravel())[0] for k in shifts])
        out.append((raw - chance) / (1 - chance))
    return np.array(out)


def test_matches_scipy_with_the_same_partners():
    g = torch.Generator().manual_seed(0)
    common = torch.rand(1, 1, 12, 12, generator=g)  # what every map shares (say, the lung field)
    own = torch.rand(6, 1, 12, 12, generator=g)
    a = common + own
    b = common + own + 0.3 * torch.rand(6, 1, 12, 12, generator=g)
    kappa, chance = chance_corrected_agreement(a, b, partners=3, seed=5)
    shifts = (torch.randperm(5, generator=torch.Generator().manual_seed(5))[:3] + 1).tolist()
    np.testing.assert_allclose(kappa.numpy(), reference(a.numpy(), b.numpy(), shifts), rtol=1e-9, atol=1e-12)
    assert (chance > 0.2).all()  # the shared part makes unrelated images correlate


def test_shared_structure_alone_scores_about_zero_and_identical_maps_one():
    g = torch.Generator().manual_seed(1)
    common = 3 * torch.rand(1, 1, 16, 16, generator=g)
    a = common + torch.rand(20, 1, 16, 16, generator=g)
    unrelated = common + torch.rand(20, 1, 16, 16, generator=g)  # same architecture "prior", other evidence
    from harness.metrics import spearman

    assert float(spearman(a, unrelated).mean()) > 0.8  # raw Spearman calls them consistent
    kappa, _ = chance_corrected_agreement(a, unrelated)
    assert abs(float(kappa.mean())) < 0.1
    same, _ = chance_corrected_agreement(a, a.clone())
    assert torch.allclose(same, torch.ones_like(same))


def test_one_image_has_no_chance_level():
    kappa, chance = chance_corrected_agreement(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    assert math.isnan(kappa.item()) and math.isnan(chance.item())


@pytest.mark.parametrize("partners", [1, 8, 100])
def test_partners_never_include_the_image_itself(partners):
    a = torch.rand(4, 1, 5, 5, generator=torch.Generator().manual_seed(2))
    kappa, chance = chance_corrected_agreement(a, a.clone(), partners=partners)
    assert (chance < 1).all() and torch.allclose(kappa, torch.ones_like(kappa))
