"""Write docs/checks.md: for each check, what it detects and what it cannot, backed by the detection matrix.

Reads the check registry (category, reference, description), the shipped suite, its calibration
file (suites/calibration/pneumothorax_cpu.json) and the meta results
(benchmarks/results/meta_cpu.json); the prose below says what each check can and cannot see.

    python benchmarks/write_checks_doc.py            # writes docs/checks.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.atomic import atomic_write_text  # noqa: E402
from harness.checks.registry import list_checks  # noqa: E402
from harness.suites import load_suite  # noqa: E402

# What each check detects, and what it cannot (from the studies, the literature and the meta run).
PROSE: dict[str, tuple[str, str]] = {
    "auroc": ("A model that does not separate positives from negatives: under-trained, trained on shuffled "
              "labels, weights destroyed.", "Anything about the explanation; a shortcut that holds in the test data "
              "(the shortcut models are often *more* accurate)."),
    "auprc": ("As AUROC, weighted towards the positives.", "As AUROC."),
    "sensitivity": ("Missed positives at the 0.5 operating point.", "Ranking quality; explanations."),
    "specificity": ("False alarms at the 0.5 operating point.", "Ranking quality; explanations."),
    "accuracy": ("Errors at the operating point.", "Class imbalance effects; explanations."),
    "precision": ("False alarms among positive calls.", "Missed positives."),
    "f1": ("Both kinds of error at the operating point.", "Which kind dominates."),
    "fpr": ("False alarms (seed 003).", "Missed positives."),
    "fnr": ("Missed positives (seed 003).", "False alarms."),
    "calibration": ("Probabilities that do not mean what they say (ECE).", "Ranking; a model can be calibrated "
                    "and useless."),
    "macro_auroc": ("A multi-label model weak on some finding (seed 001).", "Which finding, from the value alone "
                    "(the details list them)."),
    "subgroup_gap": ("A model much worse for one sex or age band (seed 001's confessed gap).", "Subgroups the "
                     "data has no metadata for."),
    "diffgradcam": ("Maps with no more heat on the lesion than off it (seed 000).", "Where off-lesion heat goes; "
                    "large diffuse maps score well if they cover the lesion."),
    "ehr_auc": ("Heat that is not concentrated on the lesion at any threshold (seed 000).", "Small lesions make "
                "every value small (0.015-0.032 in seed 000): reported, not gated."),
    "pointing_game": ("Maps whose maximum misses the lesion (the shifted-maps defect).", "Everything but the "
                      "maximum: a map can point right and be noise elsewhere; a map blurred over the lung keeps its "
                      "peak and passes. Grad-CAM's 8x8 map at 64 px hits the lesion far less often than the "
                      "gradient (healthy lower bounds 0.10-0.21 vs 0.51+ on the calib split)."),
    "energy_pointing_game": ("Maps whose energy is not on the lesion: shifted maps, and maps blurred over the "
                             "lung (the share of heat on the lesion drops).", "Small lesions cap its value near "
                             "their area; on coarse Grad-CAM maps a blur changes little (does not separate)."),
    "iou": ("Maps whose thresholded region does not overlap the lesion (CheXlocalize).", "Depends on the threshold "
            "rule (Otsu); coarse maps are penalised for their resolution."),
    "relevance_mass": ("Maps whose mass is off the lesion (Arras et al.).", "As energy pointing."),
    "lesion_focus": ("Maps that do not resolve the lesion: heat spread over the lung (a blurred map scores about "
                     "1), noise, a uniform map; heat beside the lesion scores below 1. Relative to the same map "
                     "smoothed at the lesion's own scale, so healthy seeds vary less than in absolute area shares.",
                     "A map sharply on the wrong structure of about the lesion's size scores low, but so would a "
                     "sharp map of a second, unannotated lesion; coarse maps (an 8x8 Grad-CAM) have little "
                     "lesion-scale structure to show."),
    "relevance_rank": ("Maps whose top-|lesion| pixels are off the lesion.", "How far off they are."),
    "localisation_auc": ("Maps that do not rank lesion pixels above the rest.", "Concentration: a map can rank "
                         "well and spread widely (a blurred map scores higher than the sharp one)."),
    "top_k_intersection": ("Maps whose top pixels miss the lesion.", "As relevance rank."),
    "model_randomisation": ("Explainers that do not depend on the model's parameters: edge detectors, constant "
                            "maps, Guided Backprop (Adebayo et al. 2018).", "Noise: a map that changes with every "
                            "call 'passes' (Binder et al. 2023), so a pass is necessary, not sufficient; the random "
                            "control beside it shows this. A map that did not change at all (equal, or constant "
                            "before and after) scores 1.0, where Spearman alone would be undefined."),
    "data_randomisation": ("Explainers that show the same map for a model trained on permuted labels.", "As model "
                           "randomisation; needs the label-shuffled twin (trained on first use)."),
    "random_logit": ("Maps that do not depend on the explained class (Sixt et al. 2020).", "Cannot fail on a "
                     "2-logit softmax head (the other class's map is the negative): skips there."),
    "perturbation_stability": ("Maps that change under noise, blur, brightness or JPEG that keep the prediction.",
                               "Maps that are stably wrong; needs >= 20 images that kept their prediction."),
    "equivariance": ("Maps that do not move with a rotated or shifted image.", "A chest X-ray is not "
                     "mirror-symmetric: flips are reported only."),
    "max_sensitivity": ("The largest relative change of the map under tiny uniform noise (Yeh et al. 2019): an "
                        "explainer that jumps under noise, on Grad-CAM.", "Vanilla gradients: they are themselves "
                        "more sensitive (healthy up to 2.2) than the jumpy stand-in (1.4), so the gradient item is "
                        "reported only."),
    "avg_sensitivity": ("The mean relative change under tiny noise.", "As max sensitivity."),
    "deletion": ("Maps whose top pixels are no more needed by the model than another image's map's top pixels.",
                 "Removal leaks information through its shape (ROAD); a random-pixel reference penalises smooth "
                 "maps, hence the shape-matched reference."),
    "insertion": ("As deletion, restoring pixels onto a blurred image.", "Favours smooth maps: reported only."),
    "sparseness": ("Diffuse maps (Gini index).", "Whether the few pixels are the right ones."),
    "checkpoint_consistency": ("A run whose last two epochs explain differently, e.g. two seeds' models passed off "
                               "as consecutive epochs. Chance-corrected: what every map of the architecture shares "
                               "does not count. The gradient keeps each run's fine structure (calib: healthy pairs "
                               "0.87-0.93, two seeds 0.01-0.13), so it gates.", "A run that converged on the wrong "
                               "evidence; with Grad-CAM's coarse 8x8 map, two DenseNet seeds agree like consecutive "
                               "epochs (0.78 vs healthy 0.81-0.98), so that item is reported only; needs the "
                               "previous epoch's checkpoint."),
    "seed_consistency": ("Explanations that describe the seed rather than the task.", "Needs another seed's model "
                         "(trained on first use)."),
    "artifact_attribution": ("Heat on a known artifact's pixels (outside the lesion) relative to a uniform map.",
                             "Artifacts nobody drew a mask for; heat does not prove the model uses them."),
    "artifact_removal": ("A model whose prediction falls when a known artifact is removed from the same patients "
                         "(counterfactual re-render).", "Needs a synthetic dataset that can render the "
                         "counterfactual; unknown artifacts. Sees only the carriers, mostly positives whose "
                         "probability the lesion already holds up: a weak signal, reported in the shipped suite."),
    "artifact_effect": ("A model whose prediction moves with a known artifact: every patient rendered with and "
                        "without it, the paired difference averaged over the whole split (the artifact's average "
                        "causal effect).", "As artifact removal; an effect that cancels between positives and "
                        "negatives averages out (addition reads the negatives alone)."),
    "artifact_addition": ("A model whose prediction rises when a known artifact is added to healthy patients.",
                          "As artifact removal."),
    "shift_auroc_drop": ("A model whose AUROC falls when the same patients are imaged differently (another "
                         "scanner's contrast, blur and noise: seed 001's out-of-distribution gap).", "Only the shift "
                         "it is given; a real site change can differ; no defect in the meta run targets it."),
    "adversarial_auroc_drop": ("A model whose AUROC collapses under one FGSM step (Goodfellow et al. 2015; seed "
                               "001's adversarial-robustness gap).", "One-step attacks only: robustness to stronger "
                               "attacks (PGD) is not shown; no defect in the meta run targets it."),
    "decorrelated_auroc_drop": ("A model whose AUROC falls when the artifacts stop tracking the label; with "
                                "`twin: same_patients`, on the same patients re-rendered (a paired bootstrap).",
                                "Needs a decorrelated split, or synthetic data that re-renders its patients; a "
                                "weak shortcut within the CI."),
    "outside_anatomy_attribution": ("Maps that point outside the lungs or at the image border more than a uniform "
                                    "map would (seed 001's extrathoracic bias): maps of models that learned nothing "
                                    "(shuffled labels, under-trained, randomised) and the strongest border "
                                    "shortcut.", "Most shortcuts: a small marker or token, or a 60-80% shortcut, "
                                    "raises the top-pixel density outside the lungs (0.18-0.57 of uniform on the "
                                    "calib split, healthy 0.12-0.26) without reaching 'more than uniform', and no "
                                    "threshold between separates weak shortcuts from healthy models; needs lung "
                                    "masks. The statistic is not the cause: `statistic: class_mean_top` (the class-"
                                    "averaged map) cancels the healthy models' noise (border: ci_high <= 0.13) yet "
                                    "still catches 2-3 of 21 intended defects, because the gradient maps of the 60-80% "
                                    "border and marker shortcuts do not point at the artifact the model uses "
                                    "(benchmarks/results/meta_cpu_class_mean_experiment.json). Use "
                                    "`offanatomy_occlusion` and the counterfactual checks for shortcuts."),
    "spray_clusters": ("Groups of positive predictions whose maps point off the anatomy (SpRAy).", "A shortcut used "
                       "by every prediction equally; clusters are for a human to inspect (prototypes in the "
                       "report)."),
    "context_swap": ("A model that reads anything outside the anatomy that carries the label, annotated or not and "
                     "whatever its maps show: each image's lungs are shown in a positive's and in a negative's "
                     "surroundings (another patient's pixels outside both lungs) and the rise of P(positive) is "
                     "averaged. Caught every border, marker and burned-token shortcut at 60-95% on all three "
                     "families (calib and test), where the map-based checks caught 1-11 of 21, and the strongest "
                     "ViT drain shortcut (the drain enters from outside the lungs).",
                     "A shortcut inside the lungs (most of the chest drain: 60-80% drain shortcuts stay below the "
                     "threshold); a confound the judged split does not carry (run it on data where the confound "
                     "holds); needs lung masks and both classes."),
    "offanatomy_occlusion": ("A model that relies on something outside the anatomy where its map points, "
                             "annotated or not: the burned-in token on every family, the marker shortcuts; blurring "
                             "what the map points at lowers the log-odds more than blurring a control region.",
                             "Shortcuts inside the lungs; maps that do not point at the shortcut; a wide uniform "
                             "artifact such as the border frame (a blur does not remove it: border shortcuts pass)."),
}


def main() -> None:
    suite = load_suite(ROOT / "suites" / "pneumothorax.yaml")
    calibration = _read(ROOT / "suites" / "calibration" / "pneumothorax_cpu.json")
    meta = _read(ROOT / "benchmarks" / "results" / "meta_cpu.json")
    proposals = {p["check"]: p for p in calibration.get("checks", [])}
    per_check = meta.get("per_check", {})
    lines = [
        "# The checks: what each detects, and what it cannot",
        "",
        "Generated by `python benchmarks/write_checks_doc.py` from the check registry, the shipped suite "
        "(`suites/pneumothorax.yaml`), its calibration (`suites/calibration/pneumothorax_cpu.json`, calib split) "
        "and the meta run (`benchmarks/results/meta_cpu.json`, test split; `xai-harness meta`). "
        "*Reference* is what a value is relative to; *sensitivity* is the share of the defects a gate is meant to "
        "catch (defect x family) that it caught, *false fails* the healthy models it failed.",
        "",
    ]
    if meta:
        t = meta.get("targets", {})
        lines += [f"Meta run: {meta.get('machine', {}).get('device', '?')}, {meta.get('seconds', {}).get('total', '?')} s; "
                  f"every defect caught on every family: **{t.get('every_defect_caught_on_every_family')}**; "
                  f"zero false fails on the healthy models: **{t.get('zero_false_fails_on_healthy')}**.", ""]
    items = {}
    for check in suite.checks:
        items.setdefault(check.check, []).append(check)
    for spec in sorted(list_checks(), key=lambda s: (s.category, s.name)):
        detects, cannot = PROSE.get(spec.name, ("(not described yet)", "(not described yet)"))
        lines += [f"## `{spec.name}` ({spec.category})", "", spec.description, "",
                  f"- **Detects:** {detects}", f"- **Cannot:** {cannot}", f"- **Reference:** {spec.reference}"]
        for check in items.get(spec.name, []):
            lines.append(_suite_line(check, proposals.get(check.id), per_check.get(check.id)))
        if spec.name not in items:
            lines.append("- Not in the shipped pneumothorax suite.")
        lines.append("")
    atomic_write_text(ROOT / "docs" / "checks.md", "\n".join(lines).rstrip() + "\n")
    print(ROOT / "docs" / "checks.md")


def _suite_line(check, proposal, rates) -> str:
    gate = "gate" if check.condition.severity == "fail" else "reported only"
    text = f"- Suite item `{check.id}` ({', '.join(e for e in check.explainers if e != '-') or 'no explainer'}): " \
           f"`{check.condition}`, {gate}."
    if proposal:
        d = proposal.get("defect_margin")
        text += (f" Calibration: worst healthy margin {proposal['healthy_margin']:.3f}"
                 + (f", defect margin {d:.3f}" if d is not None else "") + ("" if not proposal.get("note") else
                                                                              f" ({proposal['note']})") + ".")
    if rates:
        sens = "-" if rates["sensitivity"] is None else f"{rates['sensitivity']:.2f}"
        text += (f" Meta (test): sensitivity {sens} ({rates['caught']}/{rates['intended_defects']}), false fails "
                 f"{rates['false_fails']}/{rates['healthy']}")
        if rates.get("healthy_margin") is not None:
            d = rates.get("defect_margin")
            text += (f", margins {rates['healthy_margin']:.3f} (worst healthy) / "
                     + ("-" if d is None else f"{d:.3f}") + " (least defective intended)"
                     + {True: ", separates", False: ", does not separate", None: ""}[rates.get("separates")])
        if rates.get("missed"):
            text += f"; missed {', '.join(rates['missed'])}"
        if rates.get("caught_unintended"):
            text += f"; also caught {', '.join(rates['caught_unintended'])}"
        text += "."
    return text


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    main()
