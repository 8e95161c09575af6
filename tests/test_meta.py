"""The meta run in small: a tiny family, a few defects, a small suite; the matrix and the proposals.

The real run (three families, 21 defects, the shipped suite) takes about an hour on the CPU
(`xai-harness calibrate`, `xai-harness meta`); this one trains test_resnet on 40 synth-cxr patients.
"""

from __future__ import annotations

import json

import pytest

from harness.meta.calibrate import propose
from harness.meta.defects import get_defect
from harness.meta.families import Family
from harness.meta.matrix import detection_matrix
from harness.meta.report import matrix_figure, matrix_markdown
from harness.meta.run import population, run_population
from harness.models import CheckpointStore, ModelProvider
from harness.models.testing import install_toy
from harness.suites import load_suite

pytestmark = pytest.mark.usefixtures("one_thread")

SUITE = """
suite: meta-small
defaults: {n_boot: 100, seed: 0}
checks:
  - id: auroc
    check: auroc
    require: ci_low >= 0.55
  - id: randomisation
    check: model_randomisation
    explainers: [gradient, random]
    require: ci_high <= 0.5
    params: {n_images: 6, order: cascading}
  - id: drain_removal
    check: artifact_removal
    require: ci_high <= 0.1
    params: {artifact: chest_drain}
  - id: consistency
    check: checkpoint_consistency
    explainers: [gradient]
    require: ci_low >= 0.2
  - id: iou_reported
    check: iou
    explainers: [gradient]
    require: ci_low >= 0.05
    severity: warn
"""
DEFECTS = ["edge_explainer", "weights_randomised", "checkpoint_pair_two_seeds", "shortcut_chest_drain_95"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    import os

    os.environ.setdefault("XAI_HARNESS_CACHE", str(tmp_path_factory.mktemp("cache")))
    install_toy()
    root = tmp_path_factory.mktemp("meta")
    (root / "small.yaml").write_text(SUITE)
    suite = load_suite(root / "small.yaml")
    family = Family("tiny", "test_resnet", "toy", "timm test ResNet", dataset_options=(("n_patients", 40),))
    provider = ModelProvider(profile="cpu", store=CheckpointStore(root / "store"), device="cpu", progress=False)
    subjects = population([family], [get_defect(d) for d in DEFECTS], (0, 1))
    return suite, subjects, provider, root


def test_meta_run_records_every_item_of_every_subject_and_builds_the_matrix(small_run):
    suite, subjects, provider, root = small_run
    run = run_population(suite, subjects, provider, split="test", progress=False)
    assert run.subjects == [s.name for s in subjects]
    by_subject = {}
    for r in run.records:
        by_subject.setdefault(r["subject"], set()).add((r["check"], r["explainer"]))
        assert r["explainer"] != "random"  # controls judge conditions, not models: not in the meta run
    assert by_subject["test_resnet"] == {("auroc", "-"), ("randomisation", "gradient"),
                                         ("drain_removal", "-"), ("consistency", "gradient")}  # gates only
    assert by_subject["test_resnet_edge_explainer"] == {("randomisation", "gradient"), ("consistency", "gradient")}
    matrix = detection_matrix(run.records)
    assert "iou_reported" not in matrix["checks"]  # reported-only items never gate, never catch
    edge = matrix["per_defect"]["edge_explainer"]["families"]["tiny"]
    assert edge["caught_by_intended"] == ["randomisation"]  # edge maps do not change when the model is destroyed
    assert matrix["per_check"]["randomisation"]["intended_defects"] == 1
    assert {row["defect"] for row in matrix["rows"]} >= {"healthy", "weights_randomised", "shortcut_chest_drain_95"}
    pair = [r for r in run.records if r["defect"] == "checkpoint_pair_two_seeds" and r["check"] == "consistency"]
    assert pair and pair[0]["intended"] and pair[0]["verdict"] in ("pass", "fail")  # it has a "previous epoch"
    text = matrix_markdown(matrix, title="small")
    assert "edge_explainer" in text and "| `randomisation` |" in text
    figure = matrix_figure(matrix, root / "matrix.png", title="small")
    assert figure.stat().st_size > 1000
    json.dumps(matrix)  # the matrix is plain JSON


def test_calibration_proposes_thresholds_between_the_populations(small_run):
    suite, subjects, provider, _ = small_run
    run = run_population(suite, [s for s in subjects if s.seed == 0], provider, split="calib", progress=False)
    assert {r["split"] for r in run.records} == {"calib"}
    proposals = {p.check: p for p in propose(run.records, suite)}
    assert "iou_reported" not in proposals  # severity warn: not a gate, not calibrated
    randomisation = proposals["randomisation"]
    assert randomisation.defects and randomisation.healthy
    edge = randomisation.defects["test_resnet_edge_explainer/gradient"]
    assert edge == pytest.approx(1.0, abs=1e-6)
    if randomisation.separates:  # ci_high <= t: healthy below, the edge stand-in above, t in between
        assert max(randomisation.healthy.values()) < randomisation.proposed < edge
        assert randomisation.healthy_margin > 0 and randomisation.defect_margin > 0


def _row(check: str, defect: str, subject: str, ci_low: float, intended: bool = False) -> dict:
    """A hand-made calib record of a gate gated on ``ci_low``."""
    return {"check": check, "role": "gate", "defect": defect, "subject": subject, "ci_low": ci_low,
            "intended": intended}


def test_proposal_rule_on_hand_made_records(tmp_path):
    (tmp_path / "s.yaml").write_text("suite: s\nchecks:\n  - id: a\n    check: auroc\n    require: ci_low >= 0.8\n"
                                     "  - id: b\n    check: auroc\n    require: ci_low >= 0.5\n")
    suite = load_suite(tmp_path / "s.yaml")
    rows = [_row("a", "healthy", "h1", 0.90), _row("a", "healthy", "h2", 0.86), _row("a", "d", "d1", 0.40, True),
            _row("a", "d", "d2", 0.95), _row("b", "healthy", "h1", 0.90), _row("b", "d", "d1", 0.92, True)]
    a, b = propose(rows, suite)
    assert a.separates and a.proposed == pytest.approx(0.63) and a.healthy_margin == pytest.approx(0.23)
    assert a.defect_margin == pytest.approx(0.23) and "d2" not in a.defects  # unintended defects do not count
    assert not b.separates and b.proposed == pytest.approx(0.5) and "d1" in b.note  # overlap: kept, uncaught named
    rows[4]["ci_low"] = 0.45  # a healthy model below the current threshold: it moves below it, by 10%
    assert propose(rows, suite)[1].proposed == pytest.approx(0.405)


def test_a_localisation_gate_never_sits_below_chance(tmp_path):
    """A healthy model whose map localises at chance pulls the midpoint below chance; the gate stays at chance
    (else a map pointing anywhere, and the suite's random control, would pass) and names that model."""
    (tmp_path / "s.yaml").write_text("suite: s\nchecks:\n  - id: auc\n    check: localisation_auc\n"
                                     "    require: ci_low >= 0.6\n  - id: diff\n    check: diffgradcam\n"
                                     "    require: ci_low >= 0.05\n")
    suite = load_suite(tmp_path / "s.yaml")
    rows = [_row("auc", "healthy", "h1", 0.80), _row("auc", "healthy", "h2", 0.48),
            _row("auc", "shifted", "s", 0.36, True), _row("diff", "healthy", "h1", 0.09),
            _row("diff", "shifted", "s", -0.10, True)]
    auc, diff = propose(rows, suite)
    assert auc.proposed == 0.5 and not auc.separates and "healthy below chance: h2" in auc.note  # midpoint: 0.42
    assert auc.healthy_margin == pytest.approx(-0.02) and auc.defect_margin == pytest.approx(0.14)
    assert diff.proposed == 0.0 and diff.separates and "below chance" not in diff.note  # midpoint -0.005
    rows[3]["ci_low"] = 0.30  # a midpoint above chance is left alone
    assert propose(rows, suite)[1].proposed == pytest.approx(0.1) and propose(rows, suite)[1].note == ""


def test_rejudging_records_with_other_thresholds_needs_no_evaluation(tmp_path):
    from harness.meta.run import rejudge

    (tmp_path / "s.yaml").write_text("suite: s\nchecks:\n  - id: a\n    check: auroc\n    require: ci_low >= 0.8\n")
    model = {"subject": "m", "architecture": "resnet18", "family": "residual"}
    records = [{**model, "check": "a", "role": "gate", "verdict": "pass", "value": 0.9, "ci_low": 0.85, "ci_high": 0.95},
               {**model, "check": "a", "role": "gate", "verdict": "skip", "value": None, "ci_low": None, "ci_high": None},
               {**model, "check": "gone", "role": "gate", "verdict": "pass", "value": 1.0, "ci_low": 1.0, "ci_high": 1.0}]
    assert [r["verdict"] for r in rejudge(records, load_suite(tmp_path / "s.yaml"))] == ["pass", "skip"]
    (tmp_path / "s.yaml").write_text("suite: s\nchecks:\n  - id: a\n    check: auroc\n    require: ci_low >= 0.9\n")
    assert [r["verdict"] for r in rejudge(records, load_suite(tmp_path / "s.yaml"))] == ["fail", "skip"]


def test_rejudging_applies_the_suites_overrides_per_model(tmp_path):
    """An item the suite makes reported only for ViTs (or for one architecture) is no gate of those records."""
    from harness.meta.run import rejudge

    (tmp_path / "s.yaml").write_text(
        "suite: s\nchecks:\n  - id: a\n    check: auroc\n    require: ci_low >= 0.8\n    overrides:\n"
        "      family:vit: {severity: warn}\n      densenet121: {require: ci_low >= 0.9}\n")
    row = {"check": "a", "role": "gate", "verdict": "pass", "value": 0.9, "ci_low": 0.85, "ci_high": 0.95}
    records = [{**row, "subject": "r", "architecture": "resnet18", "family": "residual", "model_family": "cnn"},
               {**row, "subject": "v", "architecture": "vit_tiny_convstem", "family": "vit", "model_family": "vit"},
               {**row, "subject": "v_old", "architecture": "vit_tiny_convstem", "family": "vit"},  # no model_family
               {**row, "subject": "d", "architecture": "densenet121", "family": "dense", "model_family": "cnn"}]
    judged = rejudge(records, load_suite(tmp_path / "s.yaml"))
    assert [(r["subject"], r["verdict"], r["threshold"]) for r in judged] == [("r", "pass", 0.8), ("d", "fail", 0.9)]


def test_apply_writes_proposals_into_the_suite_and_keeps_its_comments(tmp_path):
    from harness.meta.apply import apply_thresholds

    text = ("suite: s  # top\nchecks:\n  - id: a   # the first\n    check: auroc\n    require: ci_low >= 0.8  # why\n"
            "    overrides:\n      resnet18: {require: ci_low >= 0.7}\n  - id: b\n    check: calibration\n"
            "    require: ci_high <= 0.15\n")
    (tmp_path / "s.yaml").write_text(text)
    changes = apply_thresholds(tmp_path / "s.yaml", {"a": ("ci_low", ">=", 0.63), "b": ("ci_high", "<=", 0.15)})
    assert changes == ["a: ci_low >= 0.8 -> 0.63"]  # b already had its proposal
    new = (tmp_path / "s.yaml").read_text()
    assert new == text.replace("ci_low >= 0.8  # why", "ci_low >= 0.63  # why")  # overrides and comments kept
    assert load_suite(tmp_path / "s.yaml").checks[0].condition.threshold == pytest.approx(0.63)
    with pytest.raises(ValueError, match="s.yaml:10: b gates `ci_high <=`"):  # a changed condition: recalibrate
        apply_thresholds(tmp_path / "s.yaml", {"b": ("ci_low", ">=", 0.5)})
    with pytest.raises(ValueError, match="no `require:` line found for c"):
        apply_thresholds(tmp_path / "s.yaml", {"c": ("ci_low", ">=", 0.5)})
    assert (tmp_path / "s.yaml").read_text() == new  # a refused apply writes nothing


def test_matrix_states_each_gates_margins_on_the_judged_split():
    def row(subject, defect, ci_low, verdict, intended=False):
        return {"check": "a", "role": "gate", "subject": subject, "defect": defect, "family": "f", "ci_low": ci_low,
                "gate_on": "ci_low", "direction": ">=", "threshold": 0.6, "verdict": verdict, "intended": intended}

    rows = [row("h0", "healthy", 0.9, "pass"), row("h1", "healthy", 0.7, "pass"), row("d", "d", 0.5, "fail", True),
            row("e", "e", 0.2, "fail")]
    rates = detection_matrix(rows)["per_check"]["a"]
    assert rates["healthy_margin"] == pytest.approx(0.1) and rates["defect_margin"] == pytest.approx(0.1)
    assert rates["separates"] and rates["sensitivity"] == 1.0 and rates["caught_unintended"] == ["e/f"]
    rows[2]["ci_low"], rows[2]["verdict"] = 0.75, "pass"  # the defect now looks healthier than h1
    rates = detection_matrix(rows)["per_check"]["a"]
    assert not rates["separates"] and rates["defect_margin"] == pytest.approx(-0.15) and rates["sensitivity"] == 0.0


def test_replace_checks_swaps_only_the_reevaluated_checks_and_keeps_subject_order():
    from harness.meta.run import PopulationRun, replace_checks

    rec = lambda s, c, v: {"subject": s, "check": c, "value": v}  # noqa: E731
    old = PopulationRun("calib", [rec("a", "auroc", 1), rec("a", "consistency", 2), rec("b", "auroc", 3),
                                  rec("b", "consistency", 4), rec("c", "consistency", 5)], 10.0, 20.0, ["a", "b", "c"])
    fresh = PopulationRun("calib", [rec("a", "consistency", 20), rec("b", "consistency", 40)], 1.0, 2.0, ["a", "b"])
    merged = replace_checks(old, fresh, ["consistency"])
    assert [(r["subject"], r["check"], r["value"]) for r in merged.records] == [
        ("a", "auroc", 1), ("a", "consistency", 20), ("b", "auroc", 3), ("b", "consistency", 40),
        ("c", "consistency", 5)]  # c was not re-evaluated: its record stays
    assert merged.subjects == ["a", "b", "c"] and merged.evaluate_seconds == 20.0


def test_a_skipped_intended_cell_is_not_counted_as_missed():
    """Guided Backprop cannot exist on a GELU network: its skip is neither caught nor missed."""
    rec = lambda defect, family, verdict, intended=True: {  # noqa: E731
        "subject": f"{family}_{defect}", "defect": defect, "family": family, "check": "rand", "explainer": "gradient",
        "verdict": verdict, "role": "gate", "intended": intended, "value": 0.5, "ci_low": 0.4, "ci_high": 0.6,
        "gate_on": "ci_high", "direction": "<=", "threshold": 0.7}
    matrix = detection_matrix([rec("guided_backprop", "cnn", "fail"), rec("guided_backprop", "vit", "skip"),
                               rec("healthy", "cnn", "pass", False)])
    assert matrix["per_check"]["rand"]["intended_defects"] == 1
    assert matrix["per_check"]["rand"]["missed"] == [] and matrix["per_check"]["rand"]["sensitivity"] == 1.0


def test_calibrating_some_checks_alone_merges_their_proposals_into_the_file_in_suite_order(tmp_path):
    from harness.meta.commands import _merged
    from harness.meta.run import PopulationRun

    (tmp_path / "s.yaml").write_text("suite: s\nchecks:\n" + "".join(
        f"  - id: {c}\n    check: auroc\n    require: ci_low >= 0.8\n" for c in ("a", "b", "c")))
    suite = load_suite(tmp_path / "s.yaml")
    saved = {"suite": "s", "checks": [{"check": "a", "proposed": 0.7}, {"check": "c", "proposed": 0.6}],
             "updates": [{"checks": ["c"]}]}
    run = PopulationRun("calib", [], 12.4, 30.6, [])
    merged, updates = _merged(saved, [{"check": "b", "proposed": 0.5}, {"check": "a", "proposed": 0.75}], suite,
                              run, tmp_path / "cal.json")
    assert merged == [{"check": "a", "proposed": 0.75}, {"check": "b", "proposed": 0.5}, {"check": "c", "proposed": 0.6}]
    assert [u["checks"] for u in updates] == [["c"], ["a", "b"]]
    assert updates[-1]["seconds"] == {"training": 12, "evaluation": 31}
    with pytest.raises(ValueError, match="calibrates suite 'other'"):
        _merged({"suite": "other", "checks": []}, [], suite, run, tmp_path / "cal.json")


def test_meta_refuses_checks_without_the_records_of_an_earlier_run(tmp_path, capsys):
    from harness.cli import main

    rc = main(["meta", "--checks", "auroc", "--families", "residual", "--defects", "none", "--no-progress",
               "--report-dir", str(tmp_path), "--results", str(tmp_path / "r.json")])
    assert rc == 2  # a usage error: one line, no traceback
    assert "--checks needs --records" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
