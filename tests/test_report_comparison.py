"""Across-model statistics in the report: ANOVA + Tukey of per-image values, Spearman vs AUROC."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.report.comparison import compare_models, render_comparisons
from harness.report.summary import render_summary


def records(means: dict[str, float], aurocs: dict[str, float], n: int = 40, suite: str = "pneumothorax") -> list[dict]:
    """Records as the check runner writes them: ``check`` is the suite's item id, ``metric`` what it measured."""
    rng = np.random.default_rng(0)
    out = []
    for model, mean in means.items():
        values = rng.normal(mean, 0.05, n)
        out.append({"suite": suite, "model": model, "check": "localisation_diffgradcam", "metric": "diffgradcam",
                    "explainer": "gradcam", "category": "localisation", "role": "gate", "value": float(values.mean()),
                    "details": {"per_image": [*values.round(5).tolist(), None]}})
        out.append({"suite": suite, "model": model, "check": "localisation_diffgradcam", "metric": "diffgradcam",
                    "explainer": "random", "category": "localisation", "role": "control", "value": 0.0,
                    "details": {"per_image": rng.normal(0, 0.05, n).tolist()}})
        out.append({"suite": suite, "model": model, "check": "performance_auroc", "metric": "auroc", "explainer": "-",
                    "category": "performance", "role": "gate", "value": aurocs[model], "details": {}})
    return out


def test_anova_matches_scipy_and_flags_the_different_model():
    recs = records({"cnn_a": 0.15, "cnn_b": 0.15, "vit": 0.05}, {"cnn_a": 0.90, "cnn_b": 0.85, "vit": 0.95})
    [entry] = compare_models(recs)
    groups = [np.array([v for v in r["details"]["per_image"] if v is not None]) for r in recs
              if r["metric"] == "diffgradcam" and r["role"] != "control"]
    assert entry["anova"]["f"] == pytest.approx(stats.f_oneway(*groups).statistic)
    differ = {(p["group_a"], p["group_b"]) for p in entry["anova"]["pairs"] if p["reject"]}
    assert differ == {("cnn_a", "vit"), ("cnn_b", "vit")}  # the two CNNs do not differ
    assert entry["spearman_vs_auroc"]["rho"] == pytest.approx(-1.0)  # accuracy and localisation not in sync
    text = render_comparisons([entry])
    assert "cnn_a vs vit" in text and "cnn_a vs cnn_b" not in text


def test_single_model_runs_have_no_comparison_section():
    recs = records({"only": 0.1}, {"only": 0.9})
    assert compare_models(recs) == []
    summary = render_summary({"run_id": "r", "created": "now", "meta": {}, "records": [], "comparisons": []})
    assert "Across models" not in summary


def test_parameters_vs_auroc_is_spearman_over_the_run_models():
    """Seed 004: parameter count vs AUROC across architectures, against scipy."""
    from scipy.stats import spearmanr

    from harness.models.architectures import parameter_count
    from harness.report.comparison import parameters_vs_auroc, render_parameters_vs_auroc

    archs = {"a": ("resnet18", 0.91), "b": ("resnet50", 0.88), "c": ("densenet121", 0.93), "d": ("vgg16", 0.80)}
    records = [{"suite": "pneumothorax", "check": "performance_auroc", "metric": "auroc", "explainer": "-",
                "model": m, "architecture": arch, "value": v, "role": "gate"} for m, (arch, v) in archs.items()]
    [entry] = parameters_vs_auroc(records)
    params = [parameter_count(archs[m][0]) for m in sorted(archs)]
    expected = spearmanr(params, [archs[m][1] for m in sorted(archs)])
    assert entry["suite"] == "pneumothorax" and entry["models"] == sorted(archs) and entry["parameters"] == params
    assert abs(entry["rho"] - expected.statistic) < 1e-12 and abs(entry["p"] - expected.pvalue) < 1e-9
    assert "rho = " in render_parameters_vs_auroc([entry]) and "suite pneumothorax" in render_parameters_vs_auroc([entry])
    assert parameters_vs_auroc(records[:2]) == []  # fewer than 3 models: no correlation


def test_models_are_compared_within_a_suite_never_across_suites():
    """``--model all`` writes several suites into one report: a pneumothorax model and a cxr14 model were
    trained on other data and judged by other items, so no table mixes them."""
    from harness.report.comparison import parameters_vs_auroc

    binary = records({"resnet18": 0.15, "vit": 0.05}, {"resnet18": 0.9, "vit": 0.8})
    multilabel = records({"densenet121": 0.12}, {"densenet121": 0.7}, suite="cxr14")
    entries = compare_models(binary + multilabel)
    assert [(e["suite"], list(e["anova"]["groups"])) for e in entries] == [("pneumothorax", ["resnet18", "vit"])]
    for r in binary + multilabel:
        r["architecture"] = {"resnet18": "resnet18", "vit": "vit_small", "densenet121": "densenet121"}[r["model"]]
    assert parameters_vs_auroc(binary + multilabel) == []  # two models in one suite, one in the other


def test_a_multilabel_suite_reads_each_model_s_macro_auroc_not_one_finding_s():
    from harness.report.comparison import model_aurocs

    rows = []
    for model, macro in {"a": 0.81, "b": 0.74}.items():
        rows.append({"suite": "cxr14", "model": model, "check": "performance_macro_auroc", "metric": "macro_auroc",
                     "explainer": "-", "value": macro, "role": "reported"})
        rows += [{"suite": "cxr14", "model": model, "check": f"performance_auroc_{f}", "metric": "auroc",
                  "explainer": "-", "value": 0.5, "role": "reported"} for f in ("nodule", "effusion")]
    rows += [{"suite": "cxr14", "model": "c", "check": f"performance_auroc_{f}", "metric": "auroc", "explainer": "-",
              "value": 0.9, "role": "gate"} for f in ("nodule", "effusion")]
    assert model_aurocs(rows) == {("cxr14", "a"): 0.81, ("cxr14", "b"): 0.74}  # c: no finding stands for it


def test_the_aurocs_it_reads_are_the_records_the_check_runner_writes(tmp_path, monkeypatch):
    """The contract that broke once: these tables read ``check == "auroc"`` while the runner writes the
    suite's item id there (``performance_auroc``), so no real run ever had a Spearman table."""
    import torch

    from harness.checks.condition import Condition
    from harness.checks.runner import run_check
    from harness.explain.context import ModelContext
    from harness.models import create_model
    from harness.models.testing import TOY_DATASET, install_toy
    from harness.report.comparison import model_aurocs, parameters_vs_auroc

    monkeypatch.setenv("XAI_HARNESS_CACHE", str(tmp_path))
    install_toy()
    torch.manual_seed(0)
    out = []
    for name, architecture in (("small", "resnet18"), ("middle", "resnet50"), ("large", "vit_base_patch16_224")):
        manifest = {"architecture": architecture, "img_size": 32, "seed": 0,
                    "dataset": {"name": TOY_DATASET, "options": {"size": 32, "n": 64}}}
        ctx = ModelContext(name, create_model("test_resnet", img_size=32, num_classes=2).eval(), manifest,
                           batch_size=64)
        result = run_check(ctx, suite="pneumothorax", check_id="performance_auroc", check="auroc", explainer=None,
                           params={"n_boot": 20}, condition=Condition.parse("ci_low >= 0.5"))
        out.append(result.to_dict())
    aurocs = model_aurocs(out)
    assert set(aurocs) == {("pneumothorax", m) for m in ("small", "middle", "large")}
    assert aurocs[("pneumothorax", "small")] == out[0]["value"]
    [entry] = parameters_vs_auroc(out)
    assert entry["models"] == ["large", "middle", "small"]


def test_a_re_rendered_report_recomputes_the_tables_from_its_records(tmp_path):
    """``xai-harness report RUN`` redraws index.html: a run written before a fix of these tables (its stored
    ``comparisons`` empty, its ``parameters_vs_auroc`` None) shows them as this version computes them."""
    from harness.report.html import render_html

    recs = records({"resnet18": 0.15, "resnet50": 0.14, "vit": 0.05}, {"resnet18": 0.9, "resnet50": 0.85, "vit": 0.7})
    for r in recs:
        r.update(architecture={"resnet18": "resnet18", "resnet50": "resnet50", "vit": "vit_small_patch16_224"}[
            r["model"]], verdict="pass", threshold=0.0, direction=">=", gate_on="value", ci_low=0.0, ci_high=1.0,
            n=40, message="")
    document = {"run_id": "old", "created": "now", "meta": {}, "records": recs, "comparisons": [],
                "parameters_vs_auroc": None, "overlays": [], "figures": [], "skipped": []}
    page = render_html([(tmp_path, document)])
    assert "Across models" in page and "localisation_diffgradcam" in page
    assert "resnet18 vs vit" in page and "parameter count and AUROC in suite pneumothorax" in page


def test_a_run_of_this_version_is_drawn_from_its_stored_tables_not_computed_again(tmp_path, monkeypatch):
    """The run computes the tables once at finish; index.html (written right after) reuses them."""
    import harness.report.html as html

    recs = records({"resnet18": 0.15, "resnet50": 0.05}, {"resnet18": 0.9, "resnet50": 0.85})
    for r in recs:
        r.update(architecture=r["model"], verdict="pass", threshold=0.0, direction=">=", gate_on="value",
                 ci_low=0.0, ci_high=1.0, n=40, message="")
    stored = compare_models(recs)
    monkeypatch.setattr(html, "compare_models", lambda records: pytest.fail("computed again"))
    document = {"run_id": "new", "created": "now", "meta": {}, "records": recs, "comparisons": stored,
                "parameters_vs_auroc": [], "overlays": [], "figures": [], "skipped": []}
    assert "resnet18 vs resnet50" in html.render_html([(tmp_path, document)])
