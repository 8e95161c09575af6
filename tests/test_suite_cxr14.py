"""suites/cxr14.yaml (seeds 001, 002, 004): it loads, names only what exists, every finding gets every item the
seeds ask for, every gate cites its calibration, it applies to the multi-label zoo only; and the per-item
``finding`` parameter it relies on (checks, maps, masks and class-averaged overlays of that finding). No training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from harness.checks.registry import get_check
from harness.checks.runner import finding_context
from harness.data.world14 import FINDINGS
from harness.explain import EXPLAINERS, list_explainers
from harness.explain.context import ModelContext
from harness.models.testing import install_toy
from harness.plugin.items import _not_applicable
from harness.suites import SuiteError, load_suite

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "suites" / "cxr14.yaml"
HEALTHY = "densenet121_minus2_chextransfer"
#: What every finding must get (id prefix -> registered check), from the issue and seed 001's confessed gaps.
PER_FINDING = {
    "performance_auroc": "auroc", "performance_f1": "f1", "performance_fpr": "fpr", "performance_fnr": "fnr",
    "calibration": "calibration", "subgroup_sex": "subgroup_gap", "subgroup_age": "subgroup_gap",
    "shift_acquisition": "shift_auroc_drop", "shift_decorrelated": "decorrelated_auroc_drop",
    "adversarial_fgsm": "adversarial_auroc_drop", "localisation_pointing_game": "pointing_game",
    "localisation_map_auc": "localisation_auc", "randomisation_cascading": "model_randomisation",
    "randomisation_logit": "random_logit", "stability_noise": "perturbation_stability",
    "checkpoint_consistency": "checkpoint_consistency", "shortcut_border_gradient": "outside_anatomy_attribution",
}
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def suite():
    return load_suite(SUITE)


@pytest.fixture(scope="module")
def calibration(suite):
    return json.loads(suite.calibration.read_text())


def test_the_suite_loads_applies_to_synth_cxr14_and_cites_its_calibration(suite):
    assert suite.name == "cxr14" and suite.datasets == ("synth-cxr14",)
    assert suite.calibration == (REPO / "suites" / "calibration" / "cxr14_cpu.json").resolve()


def test_every_check_explainer_and_parameter_it_names_exists(suite):
    list_explainers()
    for check in suite.checks:
        spec = get_check(check.check)  # raises on an unknown name
        accepted = set(spec.fn.__code__.co_varnames[: spec.fn.__code__.co_argcount + spec.fn.__code__.co_kwonlyargcount])
        assert set(check.params) - {"n_boot", "seed"} <= accepted | {"finding"}, check.id
        assert all(e == "-" or e in EXPLAINERS for e in check.explainers), check.id
        for target in check.overrides:
            assert target.startswith(("profile:", "family:")) or target in {HEALTHY}, (check.id, target)


def test_every_finding_gets_every_item_the_seeds_ask_for(suite):
    by_id = {c.id: c for c in suite.checks}
    assert by_id["performance_macro_auroc"].check == "macro_auroc"
    for finding in FINDINGS:
        for prefix, registered in PER_FINDING.items():
            check = by_id.get(f"{prefix}_{finding}")
            assert check is not None, f"{prefix}_{finding} missing"
            assert check.check == registered and check.params["finding"] == finding
    assert {c.params.get("finding") for c in suite.checks} == {None, *FINDINGS}
    ages = [c for c in suite.checks if c.check == "subgroup_gap" and c.params["attribute"] == "age"]
    assert len(ages) == len(FINDINGS)


def test_every_calibrated_item_cites_its_threshold_from_the_calib_split_and_none_gates_yet(suite, calibration):
    """Provisional suite: one healthy model's calibration did not hold on test (20 of 88 gates failed it), so
    every item is reported only; the thresholds still come from the calib split and are cited."""
    cited = {entry["check"]: entry for entry in calibration["checks"]}
    assert calibration["suite"] == "cxr14" and calibration["profile"] == "cpu"
    assert calibration["split"].startswith("calib") and HEALTHY in calibration["population"]["healthy"]
    assert all(c.condition.severity == "warn" for c in suite.checks), "provisional: no item may gate yet"
    calibrated = [c for c in suite.checks if c.id in cited]
    assert len(calibrated) > 60
    for check in calibrated:
        entry = cited[check.id]
        assert (entry["gate_on"], entry["direction"]) == (check.condition.gate_on, check.condition.direction)
        assert entry["proposed"] == check.condition.threshold, check.id
        assert entry["healthy"], f"{check.id}: no healthy value behind its threshold"
        sign = 1 if check.condition.direction == ">=" else -1
        assert all(sign * (v - check.condition.threshold) > 0 for v in entry["healthy"].values()), check.id
    assert set(cited) <= {c.id for c in suite.checks}, "the calibration file cites checks the suite does not have"


def _calibration_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("calibrate_cxr14", REPO / "benchmarks" / "calibrate_cxr14.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_calibration_keeps_a_healthy_ci_width_or_ten_percent_beyond_the_worst_healthy_model(suite):
    """The rule that sets the suite's thresholds: beyond the worst healthy value by the widest healthy CI
    (other patients move a CI bound about that much), or by 10% of the value where that is more."""
    script = _calibration_script()

    def record(check, model, low, high):
        return {"check": check, "subject": model, "explainer": "-", "value": (low + high) / 2, "ci_low": low,
                "ci_high": high, "message": ""}

    wide = [record("performance_macro_auroc", "a", 0.85, 0.95), record("performance_macro_auroc", "b", 0.82, 0.86),
            record("performance_fpr_nodule", "a", 0.00, 0.02), record("performance_fpr_nodule", "b", 0.02, 0.05)]
    proposed = {p["check"]: p for p in script.propose(suite, wide, reported=True)}
    assert proposed["performance_macro_auroc"]["proposed"] == pytest.approx(0.72)  # 0.82 - CI width 0.10
    assert proposed["performance_fpr_nodule"]["proposed"] == pytest.approx(0.08)  # 0.05 + CI width 0.03
    narrow = [record("performance_macro_auroc", "a", 0.82, 0.84)]
    proposed = {p["check"]: p for p in script.propose(suite, narrow, reported=True)}
    assert proposed["performance_macro_auroc"]["proposed"] == pytest.approx(0.738)  # 10% of 0.82 is more
    assert proposed["performance_macro_auroc"]["healthy_margin"] == pytest.approx(0.082)
    assert not script.propose(suite, narrow), "without reported=True the provisional (warn) items are left alone"


def test_calibration_reports_which_defects_an_item_catches_without_letting_them_move_the_threshold(suite):
    script = _calibration_script()

    def record(model, low, high, defect=None, intended=False):
        out = {"check": "localisation_map_auc_nodule", "subject": model, "explainer": "gradcam",
               "value": (low + high) / 2, "ci_low": low, "ci_high": high, "message": ""}
        return {**out, "defect": defect, "intended": intended} if defect else out

    healthy = [record("a", 0.70, 0.78), record("b", 0.66, 0.72)]
    shifted = record("a:shifted_maps", 0.40, 0.48, "shifted_maps", intended=True)
    jumpy = record("a:jumpy_explainer", 0.64, 0.70, "jumpy_explainer")
    entry = {p["check"]: p for p in script.propose(suite, healthy + [shifted, jumpy], reported=True)}[
        "localisation_map_auc_nodule"]
    assert entry["proposed"] == pytest.approx(0.58)  # 0.66 - widest healthy CI 0.08: the defects do not move it
    assert entry["caught"] == ["shifted_maps/gradcam"] and entry["defects"]["jumpy_explainer/gradcam"] == 0.64
    assert entry["defect_margin"] == pytest.approx(0.18) and entry["separates"]
    checks = script.propose(suite, healthy + [shifted, jumpy], reported=True)
    assert script.defect_summary(checks, healthy + [shifted, jumpy]) == [
        "shifted_maps: intended items caught 1 of 1; all items caught 1 of 1",
        "jumpy_explainer: intended items caught 0 of 0; all items caught 0 of 1"]
    with pytest.raises(SystemExit, match="trained on binary synth-cxr data.*shortcut_chest_drain"):
        script.defect_context(None, "burned_token")


def test_trained_multilabel_defects_are_the_healthy_entry_with_their_own_data_or_recipe():
    from harness.models.zoo import get_zoo_entry

    script = _calibration_script()
    healthy = get_zoo_entry("densenet121_minus2_chextransfer")
    defects = script.multilabel_defects()
    entries = {name: script.defect_entry(healthy, defect) for name, defect in defects.items()}
    assert len({e.name for e in entries.values()} | {healthy.name}) == len(entries) + 1  # each its own checkpoint
    assert all(e.architecture == healthy.architecture and e.seed == healthy.seed for e in entries.values())
    shuffled = entries["shuffled_labels"]
    assert shuffled.dataset == "shuffled-labels" and shuffled.dataset_options["base"] == "synth-cxr14"
    assert shuffled.recipe == healthy.recipe
    assert entries["undertrained"].recipe == "undertrained" and entries["undertrained"].dataset == "synth-cxr14"
    drain, border = defects["shortcut_chest_drain"], defects["shortcut_border"]
    assert drain.intends("decorrelated_auroc_drop", "shortcut", {"finding": "pneumothorax"})
    assert not drain.intends("decorrelated_auroc_drop", "shortcut", {"finding": "nodule"})
    assert border.intends("outside_anatomy_attribution", "shortcut", {"finding": "nodule", "region": "border"})
    assert not border.intends("auroc", "performance", {"finding": "nodule"})
    assert defects["undertrained"].intends("macro_auroc", "performance", {})


def test_a_multilabel_shortcut_defect_ties_its_artifact_to_its_finding_in_the_data():
    from harness.data import load_dataset
    from harness.models.zoo import get_zoo_entry

    script = _calibration_script()
    entry = script.defect_entry(get_zoo_entry("densenet121_minus2_chextransfer"),
                                script.multilabel_defects()["shortcut_chest_drain"])
    data = load_dataset(entry.dataset, "train", **{**entry.dataset_options, "n_patients": 300, "size": 32})
    has_drain = data.artifact_masks["chest_drain"].flatten(1).any(1)
    positive = data.labels[:, list(data.finding_names).index("pneumothorax")] == 1
    assert positive.sum() >= 20 and (~positive).sum() >= 20
    assert has_drain[positive].float().mean() > 0.65 and has_drain[~positive].float().mean() < 0.15
    healthy = load_dataset("synth-cxr14", "train", n_patients=300, size=32)
    healthy_drain = healthy.artifact_masks["chest_drain"].flatten(1).any(1)
    positive = healthy.labels[:, list(healthy.finding_names).index("pneumothorax")] == 1
    assert abs(healthy_drain[positive].float().mean() - healthy_drain[~positive].float().mean()) < 0.2  # no shortcut


def test_it_applies_to_the_multilabel_zoo_and_the_pneumothorax_suite_to_the_binary_one(suite):
    pneumothorax = load_suite(REPO / "suites" / "pneumothorax.yaml")
    for model in ("densenet121_minus2_chextransfer", "densenet121_chextransfer", "resnet50_cxr14"):
        assert _not_applicable(suite, model) == ""
        assert "applies to datasets synth-cxr, siim-acr" in _not_applicable(pneumothorax, model)
    assert _not_applicable(pneumothorax, "resnet18") == ""
    assert _not_applicable(suite, "resnet18") == ("suite 'cxr14' applies to datasets synth-cxr14; resnet18 is trained "
                                                  "on synth-cxr")


def _pytest(pytester: pytest.Pytester, tmp_path: Path, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--report-dir", str(tmp_path / "reports"),
                                        "--profile", "cpu", *args)


def test_pytest_suites_runs_each_suite_for_its_own_models_and_skips_the_other(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_HARNESS_CHECKPOINTS", str(tmp_path / "ckpt"))
    suites = str(REPO / "suites")
    listed = _pytest(pytester, tmp_path, suites, "--model", f"{HEALTHY},resnet18", "--collect-only", "-q").stdout.str()
    assert f"cxr14.yaml::performance_auroc_nodule[{HEALTHY}]" in listed
    assert f"cxr14.yaml::localisation_pointing_game_effusion[{HEALTHY}-gradcam]" in listed
    assert f"pneumothorax.yaml::pneumothorax[{HEALTHY}]" in listed  # one skip item, never its checks
    assert f"pneumothorax.yaml::performance_auroc[{HEALTHY}]" not in listed
    assert "cxr14.yaml::cxr14[resnet18]" in listed and "pneumothorax.yaml::performance_auroc[resnet18]" in listed
    skipped = _pytest(pytester, tmp_path, f"{suites}/pneumothorax.yaml::pneumothorax[{HEALTHY}]",
                      f"{suites}/cxr14.yaml::cxr14[resnet18]", "--model", f"{HEALTHY},resnet18", "-rs")
    skipped.assert_outcomes(skipped=2)
    skipped.stdout.fnmatch_lines([f"*suite 'pneumothorax' applies to datasets synth-cxr, siim-acr, burned-token; "
                                  f"{HEALTHY} is trained on synth-cxr14*",
                                  "*suite 'cxr14' applies to datasets synth-cxr14; resnet18 is trained on synth-cxr*"])


def test_model_all_collects_both_suites(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_HARNESS_CHECKPOINTS", str(tmp_path / "ckpt"))
    listed = _pytest(pytester, tmp_path, str(REPO / "suites"), "--model", "all", "--collect-only", "-q").stdout.str()
    assert f"cxr14.yaml::performance_macro_auroc[{HEALTHY}]" in listed
    assert "pneumothorax.yaml::performance_auroc[resnet18]" in listed
    assert "cxr14.yaml::cxr14[resnet18]" in listed and f"pneumothorax.yaml::pneumothorax[{HEALTHY}]" in listed


# --- the per-item `finding` parameter the suite relies on, on a toy multi-label model with known maps


class HalfReader(nn.Module):
    """Multi-label: finding 0 (``disk``) sums the left half of the image, finding 1 (``bar``) the right half,
    so the gradient map of each finding is exactly its half."""

    img_size, num_classes, multilabel = 32, 2, True

    def __init__(self) -> None:
        super().__init__()
        weights = torch.zeros(2, 1, 32, 32)
        weights[0, :, :, :16], weights[1, :, :, 16:] = 1.0, 1.0
        self.weights = nn.Parameter(weights)

    def forward(self, x):
        return torch.einsum("bchw,kchw->bk", x, self.weights) / 100 - 2.0


@pytest.fixture
def toy():
    install_toy()
    manifest = {"architecture": "test_resnet", "img_size": 32, "seed": 0,
                "dataset": {"name": "toy-multilabel", "options": {"n": 48}}}
    return ModelContext("toy_ml", HalfReader().eval(), manifest, batch_size=16)


def test_a_finding_parameter_checks_that_finding_and_shares_the_predictions(toy):
    bar = toy.for_finding("bar")
    assert bar is toy.for_finding("bar") and bar.target_class == 1 and bar._probs is toy._probs
    maps = {f: toy.for_finding(f).maps("gradient", "test") for f in ("disk", "bar")}
    assert torch.all(maps["disk"][..., :16] == 0.01) and torch.all(maps["disk"][..., 16:] == 0)
    assert torch.all(maps["bar"][..., 16:] == 0.01) and torch.all(maps["bar"][..., :16] == 0)
    assert torch.equal(bar.lesion_masks("test"), toy.dataset("test").lesion_masks[:, 1:2])
    assert torch.equal(bar.scores("test"), toy.probs("test")[:, 1])


def test_an_explainer_set_on_the_model_explains_every_finding_controls_stay_per_finding(toy):
    """A stand-in (the defect zoo's, or a user's own instance) must reach the finding items: before, each
    finding's sibling made fresh explainers by name and silently measured the real explainer instead."""
    from harness.explain.context import create_context_explainer
    from harness.meta.defects import get_defect

    toy.explainers.update(get_defect("shifted_maps").explainers(lambda name: create_context_explainer(name, 0)))
    control = toy.explainer("random")
    bar = toy.for_finding("bar")
    assert bar.explainer("gradient") is toy.explainer("gradient")
    real = ModelContext("real", toy.model, toy.manifest, batch_size=16).for_finding("bar").maps("gradient", "test")
    assert not torch.equal(bar.maps("gradient", "test"), real)  # the shifted maps, not the gradient's
    assert bar.explainer("random") is not control  # a control's noise is drawn per context: never shared


def test_a_check_with_its_own_finding_parameter_reads_it_any_other_runs_on_the_finding(toy):
    ctx, params = finding_context(toy, get_check("auroc"), {"finding": "bar", "n_boot": 10})
    assert ctx is toy.for_finding("bar") and params == {"finding": "bar", "n_boot": 10}
    binary = ModelContext("b", HalfReader(), toy.manifest)
    binary.model.multilabel = False
    assert finding_context(binary, get_check("auroc"), {"finding": "bar"}) == (binary, {"finding": "bar"})
    ctx, params = finding_context(toy, get_check("pointing_game"), {"finding": "bar", "n_boot": 10})
    assert ctx.finding == "bar" and params == {"n_boot": 10}


def test_an_unknown_finding_or_a_binary_model_is_a_clear_error(toy):
    with pytest.raises(KeyError, match="disk"):
        toy.for_finding("nodule")
    binary = ModelContext("b", HalfReader(), toy.manifest)
    binary.model.multilabel = False
    with pytest.raises(ValueError, match="not multi-label: drop the 'finding' parameter"):
        binary.for_finding("disk")


def test_the_session_draws_overlays_and_class_averages_per_finding(toy, tmp_path):
    from harness.session import HarnessSession

    path = tmp_path / "ml.yaml"
    path.write_text("suite: ml\nchecks:\n" + "".join(
        f"  - id: pointing_{f}\n    check: pointing_game\n    explainers: [gradient]\n    require: ci_low >= 0.0\n"
        f"    params: {{finding: {f}, n_boot: 10}}\n" for f in ("disk", "bar")))
    ml = load_suite(path)
    session = HarnessSession(profile="cpu", checkpoint_dir=str(tmp_path / "ckpt"))
    session.add_context(toy)
    results = [session.run_item(ml, check, "toy_ml", "gradient") for check in ml.checks]
    assert [r.verdict.value for r in results] == ["pass", "pass"]
    data = toy.dataset("test")
    for k, result in enumerate(results):  # chance = the lesion area fraction of that finding's positives
        area = data.lesion_masks[:, k][data.labels[:, k] == 1].float().mean()
        assert result.reference["value"] == pytest.approx(float(area))
    labels = [o.explainer for o in session.new_overlays]
    assert labels == ["gradient[disk]", "gradient[disk]-class-average", "gradient[bar]", "gradient[bar]-class-average"]
    assert "mean and std over" in session.new_overlays[1].title


def test_a_finding_that_is_not_a_name_is_a_suite_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("suite: bad\nchecks:\n  - id: p\n    check: pointing_game\n    require: ci_low >= 0.1\n"
                    "    params: {finding: 3}\n")
    with pytest.raises(SuiteError, match=r"bad.yaml:6: parameter 'finding' of check 'pointing_game' must be a string"):
        load_suite(path)


def test_perturbation_stability_explains_and_keeps_the_checked_finding(toy):
    """Multi-label: the perturbed image's map and prediction are the finding's own (the gradient of a linear
    model does not change under noise, so the similarity is exactly 1; another finding's map would give -1)."""
    from harness.checks.runner import run_check
    from harness.checks.condition import Condition

    result = run_check(toy, suite="ml", check_id="s", check="perturbation_stability", explainer="gradient",
                       params={"finding": "disk", "perturbation": "gaussian_noise(sigma=0.001)", "min_kept": 5,
                               "n_boot": 10}, condition=Condition.parse("ci_low >= 0.9"))
    assert result.verdict.value == "pass" and result.value == pytest.approx(1.0)


def test_the_python_api_takes_a_finding_too(toy):
    from harness.checks import measure

    m = measure("localisation_auc", toy, "gradient", finding="bar", n_boot=10)
    masks = toy.dataset("test").lesion_masks[:, 1]
    masks = masks[masks.flatten(1).any(1)]
    right = torch.zeros_like(masks)
    right[..., 16:] = True  # where bar's map is high (0.01; 0 elsewhere): a two-level score, ties count half
    a = (masks & right).flatten(1).sum(1) / masks.flatten(1).sum(1)
    b = (~masks & right).flatten(1).sum(1) / (~masks).flatten(1).sum(1)
    expected = (a * (1 - b) + 0.5 * (a * b + (1 - a) * (1 - b))).mean()
    assert m.value == pytest.approx(float(expected), abs=1e-4)
