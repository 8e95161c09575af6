"""Calibrate suites/histopathology.yaml on synth-histo's ``calib`` split (slides disjoint from ``test``).

``xai-harness calibrate`` proves the chest X-ray suite on its three-family population; this suite's
models are linear probes on a pretrained backbone (``pretrained: zoo:...``), which that population
does not build, so this script assembles the population itself and reuses the same proposal rule
(:func:`harness.meta.calibrate.propose`) and file format:

- healthy: the zoo probe ``resnet18_histo_probe`` (seed 0) and the same recipe with seed 1;
- trained defects: the probe on label-shuffled data (its data-randomisation twin) and the pen-mark
  shortcut probe ``resnet18_histo_probe_pen`` (pen marks on 95% of tumour patches, 5% of others);
- other defects on the seed-0 probe: every weight re-initialised, and explainer stand-ins from the
  defect zoo in place of Grad-CAM++ and the gradient (shifted, blurred, constant, jumpy maps).

Each defect is judged only on the checks it is meant to trip. A gate that no defect tests keeps a
threshold just beyond the worst healthy model and is listed under ``no_defect_evidence``.
Run from the repository root. It trains what is missing (the pretraining run, 274 s on 2 shared
cores, and five probes of 20-115 s each), then evaluates (4-8 min)::

    nice -n 10 .venv/bin/python benchmarks/calibrate_histopathology.py [--apply]

``--apply`` also writes the proposed thresholds into the suite (comments and layout kept).
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import replace
from pathlib import Path

from harness.explain.context import ModelContext, create_context_explainer
from harness.meta.apply import apply_thresholds, thresholds_of
from harness.meta.calibrate import propose
from harness.meta.defects import Intended, get_defect, randomised_copy
from harness.meta.evaluate import evaluate_item
from harness.meta.report import machine, write_json
from harness.models.provision import ModelProvider, StoreTwins, shuffled_label_twin
from harness.models.zoo import get_zoo_entry
from harness.suites import load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "suites" / "histopathology.yaml"
OUT = ROOT / "suites" / "calibration" / "histopathology_cpu.json"
HEALTHY = "resnet18_histo_probe"
SHORTCUT = "resnet18_histo_probe_pen"
EXPLAINERS = ("gradcam++", "gradient")
_PERFORMANCE = (Intended(category="performance"),)
_SHORTCUT = (Intended("artifact_removal"), Intended("artifact_addition"), Intended("artifact_attribution"),
             Intended("decorrelated_auroc_drop"))
RULE = ("separating: midpoint between the worst healthy and the least defective intended defect (half the gap is "
        "the margin each side); otherwise the threshold is kept if every healthy model clears it, else moved beyond "
        "the worst healthy value by 10% of it (at least 0.01); rounded to 3 decimals")


def subjects(provider: ModelProvider):
    """Yield ``(name, defect label, intended, ModelContext factory)`` of the calibration population."""
    entry = get_zoo_entry(HEALTHY)
    for seed in (0, 1):
        yield f"{HEALTHY}_s{seed}", "healthy", (), _context(provider, replace(entry, seed=seed,
                                                                                name=f"{HEALTHY}_s{seed}"
                                                                                if seed else HEALTHY))
    yield f"{HEALTHY}_shuffled_labels", "shuffled_labels", _PERFORMANCE, _context(provider, shuffled_label_twin(entry))
    yield SHORTCUT, "shortcut_pen_mark_95", _SHORTCUT, _context(provider, get_zoo_entry(SHORTCUT))
    yield f"{HEALTHY}_weights_randomised", "weights_randomised", _PERFORMANCE, _context(provider, entry, randomise=True)
    for name in ("shifted_maps", "blurred_maps", "constant_explainer", "jumpy_explainer"):
        defect = replace(get_defect(name), replaces=EXPLAINERS)
        yield f"{HEALTHY}_{name}", name, defect.intended, _context(provider, entry, defect=defect)


def _context(provider: ModelProvider, entry, *, randomise: bool = False, defect=None):
    def build() -> ModelContext:
        provisioned = provider.resolve(entry)
        model, manifest = provisioned.model, dict(provisioned.manifest)
        if randomise:
            model = randomised_copy(model, manifest["architecture"], seed=1234)
        ctx = ModelContext(entry.name, model, manifest, StoreTwins(provider, provisioned), seed=0)
        if defect is not None:
            ctx.explainers.update(defect.explainers(lambda name: create_context_explainer(name, 0)))
        return ctx
    return build


def evaluate(provider: ModelProvider, suite) -> tuple[list[dict], dict[str, float]]:
    """Records of every subject's gated items on the calib split, and the seconds spent."""
    records, started = [], time.perf_counter()
    for name, label, intended, build in subjects(provider):
        ctx = build()
        for check in suite.checks:
            for explainer in check.explainers:
                explainer = None if explainer == "-" else explainer
                if explainer == "random":
                    continue
                if label != "healthy" and not any(i.matches(check.check, _category(check), check.params)
                                                  for i in intended):
                    continue
                record = evaluate_item(ctx, suite, check, explainer, split="calib", profile=provider.profile)
                if record is not None:
                    records.append({**record, "subject": name, "defect": label, "intended": label != "healthy",
                                    "split": "calib"})
        del ctx
        gc.collect()
    return records, {"total": round(time.perf_counter() - started)}


def _category(check) -> str:
    from harness.checks.registry import get_check

    return get_check(check.check).category


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--apply", action="store_true", help="write the proposed thresholds into the suite")
    args = parser.parse_args()
    suite = load_suite(SUITE, calibrating=True)
    provider = ModelProvider(profile="cpu")
    records, seconds = evaluate(provider, suite)
    proposals = propose(records, suite)
    untested = [p.check for p in proposals if not p.defects]
    write_json(OUT, {"schema": 1, "suite": suite.name, "profile": "cpu", "split": "calib",
                     "population": {"healthy": [f"{HEALTHY}_s0", f"{HEALTHY}_s1"],
                                    "defects": sorted({r["defect"] for r in records} - {"healthy"})},
                     "machine": machine(), "seconds": seconds, "rule": RULE, "no_defect_evidence": untested,
                     "checks": [p.to_dict() for p in proposals]})
    for p in proposals:
        print(f"{p.check:36s} {p.gate_on} {p.direction} {p.proposed:<8g} separates={p.separates} "
              f"healthy_margin={p.healthy_margin} defect_margin={p.defect_margin} {p.note}")
    if args.apply:
        for line in apply_thresholds(SUITE, thresholds_of(proposals)):
            print("applied", line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
