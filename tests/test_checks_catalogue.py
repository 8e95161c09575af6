"""Every registered check runs from Python on a small synth-cxr context, and the new checks judge correctly."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from harness.checks import CheckSkipped, expect, list_checks, measure
from harness.explain.context import ModelContext
from harness.metrics.clustering import spectral_relevance_clusters
from harness.models import create_model
from harness.models.provision import Twins

pytestmark = pytest.mark.usefixtures("one_thread")

SHORTCUTS = {"chest_drain": {"p_pos": 0.9, "p_neg": 0.1}, "marker": {"p_pos": 0.3, "p_neg": 0.3}}


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """An untrained test_resnet on 32 synth-cxr test images at 64 px: numbers are meaningless, shapes are real."""
    import os

    os.environ.setdefault("XAI_HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    torch.manual_seed(0)
    manifest = {"architecture": "test_resnet", "img_size": 64, "seed": 0, "epoch": 1,
                "dataset": {"name": "synth-cxr", "options": {"shortcuts": SHORTCUTS}}}
    model = create_model("test_resnet", img_size=64).eval()
    return ModelContext("tiny", model, manifest, max_images=32, batch_size=16)


SMALL = {"n_boot": 50}


class FixedTwins(Twins):
    """Given twin models (None: there is none)."""

    def __init__(self, *, previous=None, seed=None, shuffled=None):
        self.previous, self.seed, self.shuffled = previous, seed, shuffled

    def previous_epoch(self):
        return self.previous

    def other_seed(self, seed):
        return self.seed

    def shuffled_labels(self, label_seed):
        return self.shuffled


def test_every_registered_check_runs_as_a_python_function(ctx):
    ran, skipped, undefined = [], {}, []
    for spec in list_checks():
        explainer = "gradient" if spec.needs_explainer else None
        params = dict(SMALL)
        if spec.name in ("model_randomisation", "random_logit", "spray_clusters", "perturbation_stability",
                         "equivariance"):
            params.update({"n_images": 8})
        if "min_kept" in inspect.signature(spec.fn).parameters:
            params["min_kept"] = 2  # 32 images: fewer positives than the default minimum
        try:
            m = measure(spec.name, ctx, explainer, **params)
        except CheckSkipped as why:
            assert str(why), spec.name
            skipped[spec.name] = str(why)
            continue
        assert isinstance(m.value, float) and m.metric and isinstance(m.details, dict), spec.name
        ran.append(spec.name)
        undefined += [] if math.isfinite(m.value) else [spec.name]
    # each skip is expected here and states its reason (no previous epoch, no other seed, a binary
    # model or label-shuffled twin, a binary model, a 2-logit softmax head for random logit, an
    # untrained model that predicts no positive)
    assert set(skipped) == {"checkpoint_consistency", "seed_consistency", "data_randomisation", "macro_auroc",
                            "random_logit", "outside_anatomy_attribution", "spray_clusters",
                            "offanatomy_occlusion"}, skipped
    assert "2-logit softmax head" in skipped["random_logit"]
    # an untrained model predicts no positive: precision and its kin are undefined (NaN), not errors
    assert set(undefined) <= {"precision", "f1", "spray_clusters", "outside_anatomy_attribution"}, undefined


@pytest.mark.parametrize("check,params", [
    ("perturbation_stability", {"perturbation": "gaussian_noise(sigma=0.01)", "n_images": 8}),
    ("equivariance", {"transform": "rotate(degrees=5.0)", "n_images": 8}),
    ("max_sensitivity", {"n_images": 8, "n_samples": 2}),
])
def test_stability_below_the_minimum_of_kept_images_is_an_error_never_a_pass(ctx, check, params):
    from harness.checks import evaluate

    result = evaluate(check, ctx, "gradient", require="ci_low >= -1e9" if "sensitivity" not in check
                      else "ci_high <= 1e9", n_boot=20, **params)  # a condition anything would meet
    assert result.verdict.value == "error"
    assert "of 8 images kept their prediction" in result.message and "at least 20" in result.message


def test_unknown_parameter_and_missing_explainer_are_clear_errors(ctx):
    with pytest.raises(TypeError, match="valid: .*split"):
        measure("diffgradcam", ctx, "gradient", splti="test")
    with pytest.raises(TypeError, match="needs an explainer"):
        measure("diffgradcam", ctx)


def test_expect_passes_and_fails_on_the_condition(ctx):
    result = expect("auroc", ctx, require="value >= 0.0", n_boot=50)
    assert result.verdict.value == "pass"
    with pytest.raises(AssertionError, match="auroc"):
        expect("auroc", ctx, require="value >= 1.01", n_boot=50)


def test_controls_are_judged_inverted_from_python(ctx):
    """The random map cannot localise, so a lax condition that it passes becomes a warning."""
    lax = expect("diffgradcam", ctx, "random", require="value >= -1.0", n_boot=50)
    assert lax.verdict.value == "uninformative" and "condition uninformative" in lax.message
    strict = expect("diffgradcam", ctx, "random", require="value >= 0.5", n_boot=50)
    assert strict.verdict.value == "behaved" and strict.role == "control"


def test_equivariance_of_an_exactly_equivariant_explainer(ctx):
    """The edge control is computed from the image alone: an exact flip of the image flips its map."""
    m = measure("equivariance", ctx, "edge", transform="hflip()", n_boot=50, min_kept=2)
    assert m.value == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="geometric"):
        measure("equivariance", ctx, "edge", transform="gaussian_noise(sigma=0.01)")


def test_spray_separates_border_heat_from_lesion_heat():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(40, 1, 32, 32, generator=g) * 0.1
    maps[:25, :, 12:20, 12:20] += 1  # heat on the lesion
    maps[25:, :, :3, :] += 1  # heat on the top border
    result = spectral_relevance_clusters(maps.clamp(0, 1), seed=0)
    assert result.n_clusters == 2
    assert sorted(torch.bincount(result.labels).tolist()) == [15, 25]
    assert len(set(result.labels[25:].tolist())) == 1
    border_cluster = int(result.labels[30])
    assert all(i >= 25 for i in result.prototypes[border_cluster])


def test_seed_consistency_compares_with_the_other_seed_and_skips_without_one(ctx):
    import dataclasses

    twin = dataclasses.replace(ctx, twins=FixedTwins(seed=ctx.model), _maps={}, _probs={}, _datasets={})
    same = measure("seed_consistency", twin, "gradient", n_boot=50)
    assert same.value == pytest.approx(1.0) and same.details["seeds"] == [0, 1]
    torch.manual_seed(5)
    other = create_model("test_resnet", img_size=64).eval()
    different = dataclasses.replace(ctx, twins=FixedTwins(seed=other), _maps={}, _probs={}, _datasets={})
    assert measure("seed_consistency", different, "gradient", n_boot=50).value < 0.9
    with pytest.raises(CheckSkipped, match="not a zoo model"):
        measure("seed_consistency", ctx, "gradient", n_boot=50)


def test_data_randomisation_compares_with_the_shuffled_label_twin(ctx):
    import dataclasses

    torch.manual_seed(7)
    twin = create_model("test_resnet", img_size=64).eval()
    with_twin = dataclasses.replace(ctx, twins=FixedTwins(shuffled=twin), _maps={}, _probs={}, _datasets={})
    m = measure("data_randomisation", with_twin, "gradient", n_boot=50)
    assert m.value < 0.9 and "twin_auroc" in m.details
    same = dataclasses.replace(ctx, twins=FixedTwins(shuffled=ctx.model), _maps={}, _probs={}, _datasets={})
    assert measure("data_randomisation", same, "gradient", n_boot=50).value == pytest.approx(1.0)
    with pytest.raises(CheckSkipped, match="not a zoo model"):
        measure("data_randomisation", ctx, "gradient", n_boot=50)


def test_shuffled_labels_permute_only_the_training_labels():
    from harness.data import load_dataset
    from harness.models.testing import install_toy

    install_toy()
    base = load_dataset("toy-blobs", "train", n=64)
    shuffled = load_dataset("shuffled-labels", "train", base="toy-blobs", n=64, label_seed=3)
    assert torch.equal(shuffled.images, base.images) and not torch.equal(shuffled.labels, base.labels)
    assert sorted(shuffled.labels.tolist()) == sorted(base.labels.tolist())
    test = load_dataset("shuffled-labels", "test", base="toy-blobs", n=64)
    assert torch.equal(test.labels, load_dataset("toy-blobs", "test", n=64).labels)
