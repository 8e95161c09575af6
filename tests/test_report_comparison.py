"""Across-model statistics in the report: ANOVA + Tukey of per-image values, Spearman vs AUROC."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.report.comparison import compare_models, render_comparisons
from harness.report.summary import render_summary


def records(means: dict[str, float], aurocs: dict[str, float], n: int = 40) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for model, mean in means.items():
        values = rng.normal(mean, 0.05, n)
        out.append({"model": model, "check": "diffgradcam", "explainer": "gradcam", "category": "localisation",
                    "value": float(values.mean()), "details": {"per_image": [*values.round(5).tolist(), None]}})
        out.append({"model": model, "check": "auroc", "explainer": "-", "category": "performance",
                    "value": aurocs[model], "details": {}})
    return out


def test_anova_matches_scipy_and_flags_the_different_model():
    recs = records({"cnn_a": 0.15, "cnn_b": 0.15, "vit": 0.05}, {"cnn_a": 0.90, "cnn_b": 0.85, "vit": 0.95})
    [entry] = compare_models(recs)
    groups = [np.array([v for v in r["details"]["per_image"] if v is not None]) for r in recs if r["check"] != "auroc"]
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
    records = [{"check": "auroc", "explainer": "-", "model": m, "architecture": arch, "value": v}
               for m, (arch, v) in archs.items()]
    entry = parameters_vs_auroc(records)
    params = [parameter_count(archs[m][0]) for m in sorted(archs)]
    expected = spearmanr(params, [archs[m][1] for m in sorted(archs)])
    assert entry["models"] == sorted(archs) and entry["parameters"] == params
    assert abs(entry["rho"] - expected.statistic) < 1e-12 and abs(entry["p"] - expected.pvalue) < 1e-9
    assert "rho = " in render_parameters_vs_auroc(entry)
    assert parameters_vs_auroc(records[:2]) is None  # fewer than 3 models: no correlation
