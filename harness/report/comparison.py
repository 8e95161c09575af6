"""Across models: one-way ANOVA + Tukey HSD of per-image localisation values, Spearman of accuracy vs
localisation, and Spearman of parameter count vs AUROC.

Seed 000 compares DiffGradCAM across architectures with ANOVA and Tukey post-hoc (p < 0.05) and finds
that accuracy and localisation are not in sync; seed 004 correlates quantities across architectures
with Spearman's rho. Computed from the result records at the end of a multi-model run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping


def compare_models(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (check, explainer) that at least two models ran with per-image values."""
    from harness.metrics.comparison import anova_tukey, spearman_correlation  # scipy: only when needed

    per_image: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(dict)
    values: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    auroc: dict[str, float] = {}
    for r in records:
        if r.get("check") == "auroc" and r.get("explainer") == "-":
            auroc[r["model"]] = float(r["value"])
        images = (r.get("details") or {}).get("per_image")
        if images and r.get("category") == "localisation":
            key = (r["check"], r["explainer"])
            per_image[key][r["model"]] = [math.nan if v is None else float(v) for v in images]
            values[key][r["model"]] = float(r["value"])
    out = []
    for (check, explainer), groups in sorted(per_image.items()):
        usable = {m: v for m, v in groups.items() if sum(x == x for x in v) >= 2}
        if len(usable) < 2:
            continue
        entry = {"check": check, "explainer": explainer, "anova": anova_tukey(usable).to_dict()}
        models = [m for m in usable if m in auroc]
        if len(models) >= 3:
            corr = spearman_correlation([auroc[m] for m in models], [values[(check, explainer)][m] for m in models])
            entry["spearman_vs_auroc"] = {"models": models, **corr.to_dict()}
        out.append(entry)
    return out


def parameters_vs_auroc(records: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Seed 004 (CheXtransfer): Spearman's rho of parameter count vs AUROC across the run's models
    (at least 3 with an ``auroc`` record and a known architecture), else None."""
    from harness.metrics.comparison import spearman_correlation
    from harness.models.architectures import ARCHITECTURES, parameter_count

    models: dict[str, tuple[str, float]] = {}
    for r in records:
        if r.get("check") == "auroc" and r.get("explainer") == "-" and r.get("value") is not None:
            if r.get("architecture") in ARCHITECTURES:
                models[r["model"]] = (r["architecture"], float(r["value"]))
    if len(models) < 3:
        return None
    names = sorted(models)
    params = [parameter_count(models[m][0]) for m in names]
    corr = spearman_correlation([float(p) for p in params], [models[m][1] for m in names])
    return {"models": names, "parameters": params, "auroc": [models[m][1] for m in names], **corr.to_dict()}


def render_parameters_vs_auroc(entry: Mapping[str, Any] | None) -> str:
    if not entry:
        return ""
    pairs = ", ".join(f"{m} {p / 1e6:.1f}M / {a:.3f}" for m, p, a in zip(entry["models"], entry["parameters"],
                                                                          entry["auroc"]))
    return (f"Spearman's rho between parameter count and AUROC (seed 004): rho = {entry['rho']:.2f}, "
            f"p = {entry['p']:.3g} over {len(entry['models'])} models ({pairs}).")


def render_comparisons(comparisons: list[Mapping[str, Any]]) -> str:
    """The "Across models" section of summary.md (empty when fewer than two models were compared)."""
    if not comparisons:
        return ""
    lines = ["## Across models", "",
             "One-way ANOVA of the per-image values, Tukey HSD for each pair (alpha 0.05, seed 000's protocol).", "",
             "| check | explainer | models (mean) | F | p | pairs that differ |", "|---|---|---|---|---|---|"]
    for c in comparisons:
        a = c["anova"]
        means = ", ".join(f"{g} {m:.3f}" for g, m in zip(a["groups"], a["means"]))
        differ = "; ".join(f"{p['group_a']} vs {p['group_b']} ({p['mean_difference']:+.3f}, p={p['p']:.3g})"
                           for p in a["pairs"] if p["reject"]) or "none"
        lines.append(f"| {c['check']} | {c['explainer']} | {means} | {a['f']:.2f} | {a['p']:.3g} | {differ} |")
    correlated = [c for c in comparisons if "spearman_vs_auroc" in c]
    if correlated:
        lines += ["", "Spearman's rho between AUROC and each localisation value across models:", ""]
        lines += [f"- {c['check']} ({c['explainer']}): rho = {c['spearman_vs_auroc']['rho']:.2f}, "
                  f"p = {c['spearman_vs_auroc']['p']:.3g} over {len(c['spearman_vs_auroc']['models'])} models"
                  for c in correlated]
    return "\n".join(lines)
