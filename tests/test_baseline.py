"""Comparison with a baseline run (``--baseline``): the paired bootstrap, the verdicts, the plugin end to end."""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from harness.checks.result import CheckResult, Verdict
from harness.metrics.stats import paired_bootstrap
from harness.report.baseline import (
    IMPROVED,
    NO_CHANGE,
    NOT_COMPARED,
    REGRESSED,
    Baseline,
    BaselineError,
    compare_records,
    judge_against_baseline,
    paired_comparison,
    render_baseline_markdown,
    verdict_of,
)
from harness.models.testing import toy_project
from harness.suites import SuiteError, load_suite

N = 240
PATIENTS = (torch.arange(N) // 3).tolist()  # 3 images per patient


def _mean_samples(values, *, dataset: str = "toy-blobs/test#abc", index=None) -> dict:
    index = list(range(len(values))) if index is None else index
    return {"kind": "mean", "split": "test", "dataset": dataset, "image_index": index,
            "patient": [PATIENTS[i] for i in index], "values": [round(float(v), 5) for v in values]}


def _record(samples: dict | None, *, value: float | None = None, direction: str = ">=", ci=(math.nan, math.nan),
            check: str = "loc", model: str = "m", verdict: str = "pass") -> dict:
    if value is None and samples is not None:
        value = float(np.nanmean([v for v in samples["values"] if v is not None]))
    details = {"split": "test", **({"samples": samples} if samples else {})}
    return {"check": check, "explainer": "gradcam", "model": model, "value": value, "ci_low": ci[0],
            "ci_high": ci[1], "direction": direction, "verdict": verdict, "seed": 0, "details": details}


def _values(seed: int = 0) -> torch.Tensor:
    """Per-image values with a large spread between patients (what pairing removes)."""
    g = torch.Generator().manual_seed(seed)
    patient_effect = torch.rand(N // 3, generator=g).repeat_interleave(3)
    return (0.2 + 0.6 * patient_effect + 0.05 * torch.randn(N, generator=g)).double()


def test_paired_mean_equals_the_reference_paired_bootstrap():
    a, b = _values(0), _values(0) + 0.004 * torch.randn(N, generator=torch.Generator().manual_seed(9)).double()
    result = paired_comparison(_mean_samples(a), _mean_samples(b), seed=3)
    rounded = [torch.tensor([round(float(v), 5) for v in x], dtype=torch.float64) for x in (a, b)]
    reference = paired_bootstrap(*rounded, groups=torch.tensor(PATIENTS), n_boot=1000, seed=3)
    assert result["delta"] == pytest.approx(float(rounded[0].mean() - rounded[1].mean()), abs=1e-12)
    assert result["ci_low"] == pytest.approx(reference.low, abs=1e-12)
    assert result["ci_high"] == pytest.approx(reference.high, abs=1e-12)
    assert result["n_paired"] == N and result["n_patients"] == N // 3


def test_identical_runs_show_no_change_with_a_ci_around_zero():
    samples = _mean_samples(_values())
    entry = compare_records(_record(samples), _record(samples), margin=0.02)
    assert entry["delta"] == 0 and entry["ci_low"] <= 0 <= entry["ci_high"]
    assert entry["verdict"] == NO_CHANGE and entry["candidate"] == entry["baseline"]
    assert {"check", "explainer", "model", "candidate", "baseline", "delta", "ci_low", "ci_high", "margin",
            "verdict", "reason"} <= set(entry)


def test_uniformly_lower_values_beyond_the_margin_are_a_regression():
    base = _values()
    noise = 0.01 * torch.randn(N, generator=torch.Generator().manual_seed(1)).double()
    entry = compare_records(_record(_mean_samples(base - 0.05 + noise)), _record(_mean_samples(base)), margin=0.02)
    assert entry["verdict"] == REGRESSED and entry["ci_high"] < -0.02
    assert entry["delta"] == pytest.approx(-0.05, abs=0.005)
    # lower by less than the margin: significantly worse, yet not a regression
    small = compare_records(_record(_mean_samples(base - 0.01 + noise)), _record(_mean_samples(base)), margin=0.02)
    assert small["verdict"] == NO_CHANGE and small["ci_high"] < 0 and "within the margin" in small["reason"]
    # lower is better (``<=``): higher values are the regression, lower ones the improvement
    up = compare_records(_record(_mean_samples(base + 0.05 + noise), direction="<="),
                         _record(_mean_samples(base), direction="<="), margin=0.02)
    down = compare_records(_record(_mean_samples(base - 0.05 + noise), direction="<="),
                           _record(_mean_samples(base), direction="<="), margin=0.02)
    assert (up["verdict"], down["verdict"]) == (REGRESSED, IMPROVED)


def test_the_pairing_matters():
    """Same mean difference, pairing removed (baseline values shuffled over images): a wider CI, no verdict."""
    base = _values()
    noise = 0.01 * torch.randn(N, generator=torch.Generator().manual_seed(2)).double()
    candidate = _mean_samples(base - 0.03 + noise)
    paired = paired_comparison(candidate, _mean_samples(base))
    shuffled = base[torch.randperm(N, generator=torch.Generator().manual_seed(5))]
    unpaired = paired_comparison(candidate, _mean_samples(shuffled))
    assert paired["delta"] == pytest.approx(unpaired["delta"], abs=1e-9)
    width = {k: r["ci_high"] - r["ci_low"] for k, r in (("paired", paired), ("unpaired", unpaired))}
    assert width["unpaired"] > 5 * width["paired"]
    assert verdict_of(paired["ci_low"], paired["ci_high"], ">=", 0.02) == REGRESSED
    assert verdict_of(unpaired["ci_low"], unpaired["ci_high"], ">=", 0.02) == NO_CHANGE


def test_a_set_level_statistic_is_recomputed_on_both_sides():
    g = torch.Generator().manual_seed(4)
    labels = (torch.rand(N, generator=g) < 0.5).double()
    weak = torch.rand(N, generator=g).double()
    strong = (weak + 0.4 * labels).clamp(0, 1)

    def samples(scores):
        return {"kind": "statistic", "statistic": "auroc", "options": {}, "split": "test", "dataset": "d",
                "image_index": list(range(N)), "patient": PATIENTS, "scores": [round(float(s), 5) for s in scores],
                "labels": labels.tolist()}

    result = paired_comparison(samples(strong), samples(weak))
    expected = roc_auc_score(labels.numpy(), strong.numpy().round(5)) - roc_auc_score(labels.numpy(),
                                                                                    weak.numpy().round(5))
    assert result["delta"] == pytest.approx(expected, abs=1e-9)
    assert result["ci_low"] < result["delta"] < result["ci_high"] and result["ci_low"] > 0
    entry = compare_records(_record(samples(strong), value=0.9), _record(samples(weak), value=0.6), margin=0.02)
    assert entry["verdict"] == IMPROVED


def test_what_cannot_be_compared_says_why():
    values = _values()
    other_images = compare_records(_record(_mean_samples(values)),
                                   _record(_mean_samples(values, dataset="synth-cxr/test#zzz")), margin=0.02)
    assert other_images["verdict"] == NOT_COMPARED and "images differ" in other_images["reason"]
    baseline = Baseline(path=None, run_id="r0", records=(_record(_mean_samples(values), check="other"),))
    missing = baseline.compare(_record(_mean_samples(values)), 0.02)
    assert missing["verdict"] == NOT_COMPARED and "no check 'loc'" in missing["reason"]
    skipped = Baseline(None, "r0", (_record(None, value=None, verdict="skip"),)).compare(_record(_mean_samples(values)),
                                                                                       0.02)
    assert skipped["verdict"] == NOT_COMPARED and "did not measure" in skipped["reason"]
    renamed = Baseline(None, "r0", (_record(_mean_samples(values), model="rc1"),)).compare(
        _record(_mean_samples(values), model="rc2"), 0.02)  # a one-model baseline stands for any model name
    assert renamed["verdict"] == NO_CHANGE and "baseline model rc1" in renamed["reason"]
    two = Baseline(None, "r0", (_record(None, model="a"), _record(None, model="b")))
    assert "several models (a, b)" in two.compare(_record(_mean_samples(values)), 0.02)["reason"]
    # a subset of the images is paired on the images both measured, and says so
    part = compare_records(_record(_mean_samples(values)), _record(_mean_samples(values[:120], index=list(range(120)))),
                           margin=0.02)
    assert part["verdict"] == NO_CHANGE and part["n_paired"] == 120 and "120 images both measured" in part["reason"]


def test_without_per_image_values_the_cis_are_compared_and_it_says_so():
    candidate = _record(None, value=0.50, ci=(0.46, 0.54))
    base = _record(None, value=0.60, ci=(0.57, 0.63))
    entry = compare_records(candidate, base, margin=0.02)
    half = 1.959963984540054 * math.hypot(0.08 / 3.919927969080108, 0.06 / 3.919927969080108)
    assert entry["delta"] == pytest.approx(-0.10) and entry["ci_high"] == pytest.approx(-0.10 + half, abs=1e-5)
    assert entry["verdict"] == REGRESSED and "compared by the two 95% CIs" in entry["reason"]


def test_a_regression_fails_a_passing_gate_but_not_a_control():
    entry = {"verdict": REGRESSED, "candidate": 0.4, "baseline": 0.5, "delta": -0.1, "ci_low": -0.12,
             "ci_high": -0.08, "margin": 0.02, "reason": "", "baseline_run": "r0"}
    base = dict(suite="s", model="m", architecture="a", explainer="gradcam", check="c", category="localisation",
                metric="x", value=0.4, ci_low=0.3, ci_high=0.5, threshold=0.1, direction=">=", verdict=Verdict.PASS,
                n=10, seed=0, message="the condition holds.")
    gate = judge_against_baseline(CheckResult(**base), entry)
    assert gate.verdict is Verdict.FAIL and "REGRESSED" in gate.message and gate.details["baseline"] == entry
    assert judge_against_baseline(CheckResult(**base, role="reported"), entry).verdict is Verdict.WARN
    assert judge_against_baseline(CheckResult(**base, role="control"), entry).verdict is Verdict.PASS
    same = judge_against_baseline(CheckResult(**base), {**entry, "verdict": NO_CHANGE})
    assert same.verdict is Verdict.PASS
    assert "regressed" in render_baseline_markdown({"records": [gate.to_dict()]})


@pytest.mark.parametrize("content, words", [
    ("{not json", "cannot read it as a results file"),
    ('{"run_id": "x"}', "no 'records' list"),
    ('{"records": [{"value": 1}]}', "not a results file of xai-harness"),
    ('{"records": []}', "no check records"),
])
def test_an_unreadable_baseline_names_the_file(tmp_path, content, words):
    path = tmp_path / "old.json"
    path.write_text(content)
    with pytest.raises(BaselineError, match=words) as err:
        Baseline.load(path)
    assert str(path) in str(err.value)
    with pytest.raises(BaselineError, match="cannot read"):
        Baseline.load(tmp_path / "missing")


def test_regression_margin_in_the_suite(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(textwrap.dedent("""\
        suite: s
        defaults: {regression_margin: 0.05}
        checks:
          - {id: a, check: auroc, require: value >= 0.5}
          - {id: b, check: auroc, require: value >= 0.5, regression_margin: 0.01}
        """))
    assert [c.regression_margin for c in load_suite(path).checks] == [0.05, 0.01]
    path.write_text("suite: s\nchecks:\n  - {id: a, check: auroc, require: value >= 0.5}\n")
    assert load_suite(path).checks[0].regression_margin == 0.02
    path.write_text("suite: s\nchecks:\n  - id: a\n    check: auroc\n    require: value >= 0.5\n"
                    "    regression_margin: -0.1\n")
    with pytest.raises(SuiteError, match=r"s.yaml:6: check key 'regression_margin' must be a number >= 0"):
        load_suite(path)


# --- the plugin end to end on the toy zoo -------------------------------------------------------------


SUITE = """\
suite: toy
defaults: {explainers: [gradcam], n_boot: 200, seed: 0}
checks:
  - id: performance_auroc
    check: auroc
    require: ci_low >= 0.6
  - id: localisation_diffgradcam
    check: diffgradcam
    require: ci_low >= 0.0
    regression_margin: 0.05
"""


@pytest.fixture
def toy(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path):
    toy_project(pytester, monkeypatch, tmp_path)
    monkeypatch.setenv("XAI_HARNESS_THREADS", "1")
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "toy.yaml").write_text(SUITE)
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("--report-dir", str(pytester.path / "reports"), "suites", "--model", "toy",
                                         "-p", "no:cacheprovider", *args)


def test_plugin_baseline_regression_fails_an_item_whose_floor_holds(toy):
    """Run once; then against that run with DiffGradCAM made better in it: the DiffGradCAM item fails although
    its floor holds, the AUROC item (its baseline equal to the candidate) passes with no significant change."""
    _run(toy).assert_outcomes(passed=2)
    results = toy.path / "reports" / "latest" / "results.json"
    document = json.loads(results.read_text())
    records = {r["check"]: r for r in document["records"]}
    loc, auc = records["localisation_diffgradcam"], records["performance_auroc"]
    assert {"values", "image_index", "patient", "dataset"} <= set(loc["details"]["samples"])
    assert {"scores", "labels", "statistic"} <= set(auc["details"]["samples"])
    assert len(loc["details"]["samples"]["values"]) == loc["n"] and "baseline" not in document

    samples = loc["details"]["samples"]  # a better baseline: every image's DiffGradCAM higher by 0.2
    samples["values"] = [None if v is None else v + 0.2 for v in samples["values"]]
    loc["value"] += 0.2
    better = toy.path / "better.json"
    better.write_text(json.dumps(document))
    second = _run(toy, "--baseline", str(better))
    second.assert_outcomes(passed=1, failed=1)
    second.stdout.fnmatch_lines(["*FAIL: localisation_diffgradcam*", "*the condition holds*REGRESSED*",
                                 "*compared with baseline run*", "*no significant change*"])
    entries = {e["check"]: e for e in json.loads(results.read_text())["baseline"]}  # a complete run: latest/
    entry = entries["localisation_diffgradcam"]
    assert entry["verdict"] == REGRESSED and entry["delta"] == pytest.approx(-0.2, abs=1e-4) and entry["margin"] == 0.05
    same = entries["performance_auroc"]
    assert same["verdict"] == NO_CHANGE and same["delta"] == 0 and same["ci_low"] <= 0 <= same["ci_high"]
    assert "Compared with the baseline" in (results.parent / "summary.md").read_text()


def test_plugin_bad_baseline_is_a_usage_error_naming_the_file(toy):
    bad = toy.path / "broken.json"
    bad.write_text("{not json")
    result = _run(toy, "--baseline", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--baseline {bad}: cannot read it as a results file*"])
