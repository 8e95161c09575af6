"""decorrelated_auroc_drop with ``twin: same_patients``: the same patients, the artifacts moved, a paired bootstrap."""

import pytest
import torch

from harness.checks import measure
from harness.data.shortcuts import DECORRELATED_RATE
from harness.metrics import auroc
from test_checks_can_fail import Constant, ThinBright, context

DRAIN_SHORTCUT = {"chest_drain": {"p_pos": 0.95, "p_neg": 0.05}}


def test_the_twin_is_the_same_patients_with_the_artifact_at_the_decorrelated_rate_in_both_classes():
    ctx = context(ThinBright(), shortcuts=DRAIN_SHORTCUT)
    test = ctx.dataset("test")
    twin = ctx.dataset("test", shortcuts={"chest_drain": {"p_pos": DECORRELATED_RATE, "p_neg": DECORRELATED_RATE}})
    assert torch.equal(test.patient_ids, twin.patient_ids) and torch.equal(test.labels, twin.labels)
    assert torch.equal(test.lesion_masks, twin.lesion_masks)
    drains = twin.has_artifact("chest_drain").float()
    for label in (0, 1):
        assert float(drains[twin.labels == label].mean()) == pytest.approx(DECORRELATED_RATE, abs=0.12)


def test_an_artifact_reader_drops_by_its_auroc_on_the_shortcut_minus_its_auroc_on_the_twin():
    """Reference: the two AUROCs computed here from an independent render of the twin."""
    ctx = context(ThinBright(), shortcuts=DRAIN_SHORTCUT)
    labels = ctx.labels("test")
    rate = {"p_pos": DECORRELATED_RATE, "p_neg": DECORRELATED_RATE}
    twin_scores = ctx.score_images(ctx.dataset("test", shortcuts={"chest_drain": rate}).as_float())
    expected = float(auroc(ctx.scores("test"), labels) - auroc(twin_scores, labels))
    m = measure("decorrelated_auroc_drop", ctx, None, twin="same_patients", n_boot=200)
    assert m.value == pytest.approx(expected, abs=1e-9)
    # it reads the drain (95% vs 5% on the test split) and, less, the pleural line, also thin and bright
    # (AUROC ~0.73 on the twin)
    assert m.value > 0.15 and m.ci_low > 0.1
    assert m.n == len(labels)


def test_a_model_that_ignores_the_artifacts_drops_exactly_nothing():
    m = measure("decorrelated_auroc_drop", context(Constant(), shortcuts=DRAIN_SHORTCUT), None,
                twin="same_patients", n_boot=100)
    assert (m.value, m.ci_low, m.ci_high) == (0.0, 0.0, 0.0)


def test_the_paired_twin_is_narrower_than_another_patients_split():
    """The paired bootstrap removes the other patients' sampling noise that the ``split`` twin carries."""
    ctx = context(ThinBright(), shortcuts=DRAIN_SHORTCUT)
    paired = measure("decorrelated_auroc_drop", ctx, None, twin="same_patients", n_boot=200)
    unpaired = measure("decorrelated_auroc_drop", ctx, None, twin="split", n_boot=200)
    assert paired.ci_high - paired.ci_low < unpaired.ci_high - unpaired.ci_low


def test_an_unknown_twin_is_an_error_that_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown twin 'other'; known: split, same_patients"):
        measure("decorrelated_auroc_drop", context(Constant()), None, twin="other")
