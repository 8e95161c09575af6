"""suites/histopathology.yaml (seed 003): it loads, names only registered things, its gates are the calibrated ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checks.registry import get_check
from harness.data import list_datasets
from harness.explain import EXPLAINERS
from harness.models.zoo import get_zoo_entry
from harness.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "histopathology.yaml"


def uncalibrated_gates(suite, calibration: dict) -> list[str]:
    """Gates whose condition differs from the calibration's proposal (or that it never calibrated)."""
    proposals = {p["check"]: p for p in calibration["checks"]}
    bad = []
    for check in suite.checks:
        if check.condition.severity != "fail":
            continue
        p = proposals.get(check.id)
        if p is None or (check.condition.gate_on, check.condition.direction) != (p["gate_on"], p["direction"]) \
                or check.condition.threshold != pytest.approx(p["proposed"]):
            bad.append(check.id)
    return bad + sorted(set(proposals) - {c.id for c in suite.checks if c.condition.severity == "fail"})


@pytest.fixture(scope="module")
def suite():
    return load_suite(SUITE)


@pytest.fixture(scope="module")
def calibration(suite):
    return json.loads(suite.calibration.read_text())


def test_suite_loads_and_applies_to_histopathology_data_only(suite):
    assert suite.name == "histopathology" and set(suite.datasets) == {"synth-histo", "pcam"}
    assert set(suite.datasets) <= set(list_datasets())


def test_every_check_and_explainer_is_registered_and_seed_003_is_covered(suite):
    names = {c.check for c in suite.checks}
    for check in suite.checks:
        get_check(check.check)  # raises for an unknown name
        assert all(e == "-" or e in EXPLAINERS for e in check.explainers), check.id
    assert {"fpr", "fnr", "accuracy", "diffgradcam", "model_randomisation", "data_randomisation",
            "perturbation_stability", "artifact_removal"} <= names
    assert any("gradcam++" in c.explainers for c in suite.checks if c.check == "diffgradcam")


def test_every_gate_has_the_threshold_its_calibration_proposes(suite, calibration):
    assert calibration["split"] == "calib" and calibration["suite"] == suite.name
    assert uncalibrated_gates(suite, calibration) == []


def test_a_gate_moved_away_from_its_calibration_is_caught(suite, calibration):
    moved = json.loads(json.dumps(calibration))
    moved["checks"][0]["proposed"] += 0.05
    assert uncalibrated_gates(suite, moved) == [moved["checks"][0]["check"]]


def test_gates_without_defect_evidence_are_named(calibration):
    untested = {p["check"] for p in calibration["checks"] if not p["defects"]}
    assert set(calibration["no_defect_evidence"]) == untested
    tested = {p["check"] for p in calibration["checks"] if p["defects"]}
    assert {"performance_auroc", "shortcut_decorrelated_auroc_drop", "localisation_pointing_game"} <= tested


def test_seed_002s_focal_model_fine_tunes_the_histology_backbone_on_synth_cxr14():
    """Seed 002 fine-tunes pretrained weights with its early layers frozen: without ImageNet weights, its
    zoo entry starts from the backbone pretrained on another domain and task (trained on first use)."""
    from harness.models.recipes import get_recipe

    focal = get_zoo_entry("resnet18_cxr14_focal")
    assert (focal.dataset, focal.recipe, focal.pretrained) == ("synth-cxr14", "focal_finetune",
                                                               "zoo:resnet18_histo_pretrain")
    assert get_zoo_entry("resnet18_histo_pretrain").architecture == focal.architecture
    recipe = get_recipe("focal_finetune", "cpu")
    assert recipe.loss == "focal" and recipe.trainable_stages == 2


def test_the_zoo_probe_is_a_linear_probe_on_a_backbone_pretrained_on_another_task():
    probe = get_zoo_entry("resnet18_histo_probe")
    assert probe.recipe == "linear_probe" and probe.dataset == "synth-histo"
    assert probe.pretrained == "zoo:resnet18_histo_pretrain"
    pretrain = get_zoo_entry("resnet18_histo_pretrain")
    assert pretrain.dataset_options == {"task": "tissue"} and pretrain.architecture == probe.architecture


def test_no_suite_judges_a_pretraining_backbone_it_skips_with_the_reason():
    """``--model all`` met resnet18_histo_pretrain (the tissue task) under the tumour suite: 41 errors that
    failed the run although no model was at fault. A backbone is marked ``purpose: pretraining``."""
    from harness.plugin.items import _not_applicable
    from harness.suites import load_suite

    backbone = get_zoo_entry("resnet18_histo_pretrain")
    assert backbone.purpose == "pretraining" and get_zoo_entry("resnet18_histo_probe").purpose == "judged"
    for name in ("histopathology", "pneumothorax", "cxr14"):
        reason = _not_applicable(load_suite(ROOT / "suites" / f"{name}.yaml"), "resnet18_histo_pretrain")
        assert "pretraining backbone" in reason and f"suite {name!r} does not apply" in reason
    assert _not_applicable(load_suite(SUITE), "resnet18_histo_probe") == ""
