"""context_swap: the composite is exact, donors are other patients, and the value is the reader's label gap."""

import pytest
import torch

from harness.checks import measure
from harness.checks.context_swap import draw_donors, swap_surroundings
from test_checks_can_fail import Constant, TokenReader, context


def test_the_composite_keeps_both_anatomies_and_takes_only_the_shared_surroundings_from_the_donor():
    images = torch.stack([torch.full((1, 3, 3), 1.0), torch.full((1, 3, 3), 2.0)])
    anatomy = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
    anatomy[0, 0, 1, 1] = True  # owner 0's lungs: the centre
    anatomy[1, 0, 0, 0] = True  # donor 1's lungs: a corner
    out = swap_surroundings(images, anatomy, torch.tensor([1, 0]))
    expected0 = torch.full((3, 3), 2.0)
    expected0[1, 1] = expected0[0, 0] = 1.0  # its own lungs, and where the donor's lungs (and lesion) would show
    assert torch.equal(out[0, 0], expected0)
    expected1 = torch.full((3, 3), 1.0)
    expected1[1, 1] = expected1[0, 0] = 2.0
    assert torch.equal(out[1, 0], expected1)


def test_donors_are_other_patients_and_the_draw_is_seeded():
    patients = torch.tensor([0, 0, 1, 1, 2, 3])
    pool, owners = torch.tensor([0, 1, 2]), torch.arange(6)
    draws = [draw_donors(pool, patients, owners, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    assert not (patients[draws[0]] == patients[owners]).any()
    for seed in range(20):
        donors = draw_donors(pool, patients, owners, torch.Generator().manual_seed(seed))
        assert not (patients[donors] == patients[owners]).any()


def test_a_model_that_ignores_the_surroundings_scores_exactly_zero():
    ctx = context(Constant(), dataset="burned-token", options={"base": "synth-cxr"}, shortcuts={})
    m = measure("context_swap", ctx, None, n_boot=50, n_donors=2)
    assert (m.value, m.ci_low, m.ci_high) == (0.0, 0.0, 0.0)


def test_a_token_reader_follows_the_donors_label_by_the_token_rate_gap():
    """Reference: the reader's own gap E[P | positive] - E[P | negative] on the unswapped images (the token's
    90% vs 10% rates as this reader sees them); swapping the surroundings hands that gap to every owner."""
    ctx = context(TokenReader(), dataset="burned-token", options={"base": "synth-cxr"}, shortcuts={})
    scores, labels = ctx.scores("test"), ctx.labels("test")
    gap = float(scores[labels == 1].mean() - scores[labels == 0].mean())
    assert gap > 0.6
    m = measure("context_swap", ctx, None, n_boot=200, n_donors=4)
    assert m.value == pytest.approx(gap, abs=0.1)
    assert m.ci_low > 0.4
    assert m.details["n_pairs"] == 4 * len(labels)
