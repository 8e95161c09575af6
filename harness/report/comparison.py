"""Across models: one-way ANOVA + Tukey HSD of per-image localisation values, Spearman of accuracy vs
localisation, and Spearman of parameter count vs AUROC.

Seed 000 compares DiffGradCAM across architectures with ANOVA and Tukey post-hoc (p < 0.05) and finds
that accuracy and localisation are not in sync; seed 004 correlates quantities across architectures
with Spearman's rho. Computed from the result records at the end of a multi-model run.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

#: Tukey pairs listed per row of the tables (17 models make 136 pairs); results.json keeps them all.
MAX_PAIRS_SHOWN = 8


def compare_models(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (suite, check, explainer) that at least two models of the suite ran with per-image
    values. Models are compared within a suite only (one dataset and protocol; ``--model all`` runs several
    suites in one report), and controls never: their maps do not depend on the model."""
    from harness.metrics.comparison import anova_tukey, spearman_correlation  # scipy: only when needed

    records = list(records)
    per_image: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(dict)
    values: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    for r in records:
        images = (r.get("details") or {}).get("per_image")
        if images and r.get("category") == "localisation" and r.get("role") != "control":
            key = (str(r.get("suite") or ""), r["check"], r["explainer"])
            per_image[key][r["model"]] = [math.nan if v is None else float(v) for v in images]
            values[key][r["model"]] = float(r["value"]) if r.get("value") is not None else math.nan
    auroc = model_aurocs(records)
    out = []
    for key, groups in sorted(per_image.items()):
        suite, check, explainer = key
        usable = {m: v for m, v in groups.items() if sum(x == x for x in v) >= 2}
        if len(usable) < 2:
            continue
        entry = {"suite": suite, "check": check, "explainer": explainer, "anova": anova_tukey(usable).to_dict()}
        models = [m for m in usable if (suite, m) in auroc and math.isfinite(values[key][m])]
        if len(models) >= 3:
            corr = spearman_correlation([auroc[(suite, m)] for m in models], [values[key][m] for m in models])
            entry["spearman_vs_auroc"] = {"models": models, **corr.to_dict()}
        out.append(entry)
    return out


def model_aurocs(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], float]:
    """(suite, model) -> the model's headline AUROC in that suite: its macro AUROC where the suite has one
    (multi-label: seed 004 averages over the findings), else its one AUROC record (a binary suite). Records
    are the runner's: ``check`` is the suite's item id, ``metric`` what was measured. A model with several
    AUROC records and no macro AUROC (per-finding items only) has none: no finding stands for the model."""
    macro: dict[tuple[str, str], float] = {}
    single: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        if r.get("explainer") != "-" or r.get("value") is None or r.get("role") == "control":
            continue
        key = (str(r.get("suite") or ""), r["model"])
        if r.get("metric") == "macro_auroc":
            macro[key] = float(r["value"])
        elif r.get("metric") == "auroc":
            single[key].append(float(r["value"]))
    return {**{k: v[0] for k, v in single.items() if len(v) == 1}, **macro}


def parameters_vs_auroc(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Seed 004 (CheXtransfer): Spearman's rho of parameter count vs AUROC across the models of each suite
    that has at least 3 with a headline AUROC (:func:`model_aurocs`) and a known architecture."""
    from harness.metrics.comparison import spearman_correlation
    from harness.models.architectures import ARCHITECTURES, parameter_count

    records = list(records)
    architecture = {(str(r.get("suite") or ""), r["model"]): r.get("architecture") for r in records}
    by_suite: dict[str, dict[str, tuple[str, float]]] = defaultdict(dict)
    for (suite, model), value in model_aurocs(records).items():
        if architecture.get((suite, model)) in ARCHITECTURES:
            by_suite[suite][model] = (architecture[(suite, model)], value)
    out = []
    for suite, models in sorted(by_suite.items()):
        if len(models) < 3:
            continue
        names = sorted(models)
        params = [parameter_count(models[m][0]) for m in names]
        corr = spearman_correlation([float(p) for p in params], [models[m][1] for m in names])
        out.append({"suite": suite, "models": names, "parameters": params, "auroc": [models[m][1] for m in names],
                    **corr.to_dict()})
    return out


def render_parameters_vs_auroc(entries: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None) -> str:
    """The lines of :func:`parameters_vs_auroc_lines` as paragraphs of summary.md."""
    return "\n\n".join(parameters_vs_auroc_lines(entries))


def parameters_vs_auroc_lines(entries: Sequence[Mapping[str, Any]] | Mapping[str, Any] | None) -> list[str]:
    """One line per suite (a results.json written before suites were told apart holds one entry, or none)."""
    if not entries:
        return []
    lines = []
    for entry in [entries] if isinstance(entries, Mapping) else entries:
        pairs = ", ".join(f"{m} {p / 1e6:.1f}M / {a:.3f}" for m, p, a in zip(entry["models"], entry["parameters"],
                                                                              entry["auroc"]))
        where = f" in suite {entry['suite']}" if entry.get("suite") else ""
        lines.append(f"Spearman's rho between parameter count and AUROC{where} (seed 004): rho = {entry['rho']:.2f}, "
                     f"p = {entry['p']:.3g} over {len(entry['models'])} models ({pairs}).")
    return lines


def differing_pairs(anova: Mapping[str, Any], limit: int = MAX_PAIRS_SHOWN) -> str:
    """The Tukey pairs whose means differ, largest difference first; past ``limit`` only how many more."""
    pairs = sorted((p for p in anova["pairs"] if p["reject"]), key=lambda p: -abs(p["mean_difference"]))
    text = "; ".join(f"{p['group_a']} vs {p['group_b']} ({p['mean_difference']:+.3f}, p={p['p']:.3g})"
                     for p in pairs[:limit]) or "none"
    if len(pairs) > limit:
        text += f"; and {len(pairs) - limit} more of {len(anova['pairs'])} pairs (results.json)"
    return text


def render_comparisons(comparisons: list[Mapping[str, Any]]) -> str:
    """The "Across models" section of summary.md (empty when fewer than two models were compared)."""
    if not comparisons:
        return ""
    lines = ["## Across models", "",
             "One-way ANOVA of the per-image values, Tukey HSD for each pair (alpha 0.05, seed 000's protocol).", "",
             "| suite | check | explainer | models (mean) | F | p | pairs that differ |",
             "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        a = c["anova"]
        means = ", ".join(f"{g} {m:.3f}" for g, m in zip(a["groups"], a["means"]))
        lines.append(f"| {c.get('suite') or '-'} | {c['check']} | {c['explainer']} | {means} | {a['f']:.2f} | "
                     f"{a['p']:.3g} | {differing_pairs(a)} |")
    correlated = [c for c in comparisons if "spearman_vs_auroc" in c]
    if correlated:
        lines += ["", "Spearman's rho between AUROC and each localisation value across the suite's models:", ""]
        lines += [f"- {c.get('suite') or '-'}: {c['check']} ({c['explainer']}): rho = {c['spearman_vs_auroc']['rho']:.2f}, "
                  f"p = {c['spearman_vs_auroc']['p']:.3g} over {len(c['spearman_vs_auroc']['models'])} models"
                  for c in correlated]
    return "\n".join(lines)
