"""shift_auroc_drop and adversarial_auroc_drop (seed 001's OOD and adversarial gaps): known answers, a pass and a fail."""

from __future__ import annotations

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from harness.checks import evaluate
from harness.checks.prediction_shift import fgsm
from harness.explain.context import ModelContext
from harness.models.testing import install_toy

pytestmark = pytest.mark.usefixtures("one_thread")
N_BOOT = 100


class MeanReader(nn.Module):
    """Binary softmax model: logit = slope * (mean intensity - 0.37); the toy disk raises the mean."""

    img_size, num_classes, multilabel = 32, 2, False

    def __init__(self, slope: float = 400.0) -> None:
        super().__init__()
        self.slope = nn.Parameter(torch.tensor(slope))

    def forward(self, x):
        logit = self.slope * (x.mean((1, 2, 3)) - 0.37)
        return torch.stack([torch.zeros_like(logit), logit], 1)


class DiskThreshold(nn.Module):
    """Reads the disk through an absolute intensity level: logit = 50 relu(max - 0.7) - 5 (blind below 0.7)."""

    img_size, num_classes, multilabel = 32, 2, False

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        logit = 50 * torch.relu(x.amax((1, 2, 3)) - 0.7) - 5 + 0 * self.anchor
        return torch.stack([torch.zeros_like(logit), logit], 1)


def context(model: nn.Module) -> ModelContext:
    install_toy()
    manifest = {"architecture": "test_resnet", "img_size": 32, "seed": 0,
                "dataset": {"name": "toy-blobs", "options": {"n": 96}}}
    return ModelContext("toy", model.eval(), manifest, batch_size=32)


def test_shift_drop_equals_the_two_aurocs_and_fails_an_absolute_threshold_model():
    ctx = context(DiskThreshold())
    r = evaluate("shift_auroc_drop", ctx, require="ci_high <= 0.05", perturbation="brightness(delta=-0.3)", n_boot=N_BOOT)
    labels = ctx.labels("test").numpy()
    clean = roc_auc_score(labels, ctx.scores("test").numpy())
    shifted = (ctx.images("test") - 0.3).clamp(0, 1)
    after = roc_auc_score(labels, torch.sigmoid(50 * torch.relu(shifted.amax((1, 2, 3)) - 0.7) - 5).numpy())
    assert r.value == pytest.approx(clean - after, abs=1e-6)
    assert clean > 0.95 and r.value > 0.3 and r.verdict.value == "fail"
    assert r.details["auroc_changed"] == pytest.approx(after, abs=1e-6)


def test_shift_drop_is_zero_for_the_identity_shift_and_passes():
    r = evaluate("shift_auroc_drop", context(DiskThreshold()), require="ci_high <= 0.05", perturbation="brightness(delta=0.0)",
                 n_boot=N_BOOT)
    assert r.value == 0.0 and r.ci_high == 0.0 and r.verdict.value == "pass"
    assert r.details["n_predictions_flipped"] == 0


def test_fgsm_moves_every_pixel_by_epsilon_against_the_label():
    """For logit = a * mean(x) + b with a > 0 the loss gradient's sign is -1 for positives, +1 for negatives."""
    ctx = context(MeanReader())
    x, y = ctx.images("test")[:16], ctx.labels("test")[:16]
    attacked = fgsm(ctx.model, x, y, 1, 0.01, multilabel=False)
    expected = (x + 0.01 * (1 - 2 * y.float())[:, None, None, None]).clamp(0, 1)
    assert torch.allclose(attacked, expected, atol=1e-6)


def test_adversarial_drop_passes_a_small_step_and_fails_a_large_one():
    ctx = context(MeanReader())
    small = evaluate("adversarial_auroc_drop", ctx, require="ci_high <= 0.05", epsilon=0.0005, n_boot=N_BOOT)
    large = evaluate("adversarial_auroc_drop", ctx, require="ci_high <= 0.05", epsilon=0.2, n_boot=N_BOOT)
    assert small.details["auroc"] > 0.9
    assert small.verdict.value == "pass" and small.value == pytest.approx(0.0, abs=0.02)
    assert large.verdict.value == "fail" and large.details["auroc_changed"] < 0.1


def test_adversarial_epsilon_out_of_range_is_an_error_naming_it():
    with pytest.raises(ValueError, match=r"epsilon must lie in \(0, 1\)"):
        evaluate("adversarial_auroc_drop", context(MeanReader()), require="ci_high <= 0.05", epsilon=1.5, n_boot=N_BOOT)
