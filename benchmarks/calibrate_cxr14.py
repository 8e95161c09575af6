"""Calibrate suites/cxr14.yaml's gates on the calib split of healthy multi-label zoo models.

``xai-harness calibrate`` needs a healthy population and a defect zoo of the suite's dataset; its
defect zoo is binary (synth-cxr), so for the multi-label suite this script measures every gated
item of the suite on the healthy models (``--seeds 0,1,2`` trains two more seeds of each) and
sets each threshold from them alone: beyond the worst healthy value by the widest healthy 95% CI of the check (the
spread that other patients add), or by 10% of the value (at least 0.01; the rule of
``harness.meta.calibrate`` when no defect separates) where that is more, rounded to 3 decimals in the
passing direction. ``--defects`` then measures which items catch which defect (the zoo's untrained
ones on the healthy model, and multi-label models trained with a defect: :func:`multilabel_defects`);
the calibration file records it per gate, and defects never move a threshold.

The calib split is the ``test`` split of a second synth-cxr14 world whose seed is derived from the
model's dataset seed as for synth-cxr's ``calib`` split (``harness.data.splits.calibration_world``):
other patients than every verdict's ``test`` (``test_decorrelated`` likewise becomes that world's).

Run from the repository root (each model trains on first use, about 2 minutes on 2 idle CPU cores; the
measurement takes about 15 minutes per model):

    .venv/bin/python benchmarks/calibrate_cxr14.py --profile cpu --seeds 0,1,2 --include-reported  # the shipped file
    .venv/bin/python benchmarks/calibrate_cxr14.py --profile cpu            # writes calibration/cxr14_cpu.json
    .venv/bin/python benchmarks/calibrate_cxr14.py --profile cpu --apply    # ... and the thresholds into the suite
    .venv/bin/python benchmarks/calibrate_cxr14.py --records FILE --apply   # propose again from saved values
    .venv/bin/python benchmarks/calibrate_cxr14.py --include-reported --defects shifted_maps,weights_randomised \
        --defects-only --merge suites/calibration/cxr14_cpu.json           # which items catch which defect
    .venv/bin/python benchmarks/calibrate_cxr14.py --include-reported \
        --defects shuffled_labels,undertrained,shortcut_chest_drain,shortcut_border \
        --defects-only --merge suites/calibration/cxr14_cpu.json           # trained defects (first use: trains)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from harness.meta.calibrate import MIN_BUFFER, RELATIVE_BUFFER  # noqa: E402

SUITE = Path(__file__).resolve().parents[1] / "suites" / "cxr14.yaml"
HEALTHY = ("densenet121_minus2_chextransfer",)
#: Registered checks whose value lies in [0, 1]: a threshold at a bound cannot fail (see ``propose``).
BOUNDED = {"auroc", "macro_auroc", "f1", "fpr", "fnr", "calibration", "subgroup_gap", "pointing_game",
           "localisation_auc"}
#: Chance-corrected similarities (0 = chance): a floor at or below 0 accepts chance-level maps.
CHANCE_CORRECTED = {"checkpoint_consistency", "seed_consistency"}
RULE = (f"no defect population yet: the threshold lies beyond the worst healthy value on the calib split by the "
        f"widest healthy 95% CI of the check (ci_high - ci_low: the patient-sampling spread a test split adds), or by "
        f"{RELATIVE_BUFFER:.0%} of the value (at least {MIN_BUFFER}) where that is more, rounded to 3 decimals towards "
        "passing the healthy models; healthy_margin = worst healthy value minus the threshold, in the passing "
        "direction")


def calib_context(session: Any, model: str, suite: Any) -> Any:
    """The model's context on its calib world: the same model, its twins, another world's patients."""
    from harness.data.splits import calibration_world
    from harness.explain.context import ModelContext

    ctx = session.context(model, suite)
    spec = ctx.manifest["dataset"]
    world_seed, _, _ = calibration_world("calib", int(spec.get("options", {}).get("seed", 0)))
    manifest = {**ctx.manifest, "dataset": {**spec, "options": {**spec.get("options", {}), "seed": world_seed}}}
    return ModelContext(model, ctx.model, manifest, ctx.twins, None, ctx.batch_size, seed=ctx.seed), world_seed


def seed_name(model: str, seed: int) -> str:
    """The name of ``model``'s zoo entry trained with another seed (``<model>_s<seed>``; seed 0 is the entry)."""
    return model if seed == 0 else f"{model}_s{seed}"


def add_seed_variants(session: Any, models: tuple[str, ...], seeds: tuple[int, ...]) -> tuple[str, ...]:
    """Each zoo model with each seed, as the session's models (another seed: the same entry with that seed,
    trained on first use with progress, named by :func:`seed_name`)."""
    from dataclasses import replace

    from harness.models.zoo import get_zoo_entry

    names = []
    for model in models:
        for seed in seeds:
            name = seed_name(model, seed)
            if seed != 0:
                add_entry(session, replace(get_zoo_entry(model), name=name, seed=seed))
            names.append(name)
    return tuple(names)


def add_entry(session: Any, entry: Any) -> str:
    """Zoo entry ``entry`` as one of the session's models (trained on first use, with progress); its name."""
    from harness.explain.context import ModelContext

    subject = session.provider.resolve(entry)
    session.add_context(ModelContext(entry.name, subject.model, subject.manifest, session.provider.twins(subject),
                                     seed=session.seed))
    return entry.name


#: Defects of the zoo that need no training, so they apply to a multi-label model as they are: explainer stand-ins
#: and the weight-randomised network (the zoo's trained ones are built on binary synth-cxr data).
UNTRAINED_KINDS = ("explainer", "weights")
#: A shortcut model's artifact is on this share of the images where its target holds, and on NEGATIVE_RATE of the
#: others (the middle strength of the binary zoo); the other artifacts stay at synth-cxr14's own rate, in every image.
SHORTCUT_STRENGTH = 0.80


def multilabel_defects() -> dict[str, Any]:
    """Defects trained on multi-label data (synth-cxr14), each from the healthy model's zoo entry by the trainer:

    - ``shuffled_labels``: the label rows of the training images permuted (the model can only memorise);
    - ``undertrained``: three optimizer steps on 96 images (the zoo's ``undertrained`` recipe);
    - ``shortcut_chest_drain``: a chest drain on 80% of the pneumothoraces and 5% of the other images
      (Oakden-Rayner et al. 2020: drains mark the treated cases);
    - ``shortcut_border``: a bright frame on 80% of the images with any finding and 5% of the normal ones (the
      extrathoracic bias seed 001 confesses), so every finding can lean on it.
    """
    from harness.data.shortcuts import ARTIFACTS, DEFAULT_RATE
    from harness.meta.defects import NEGATIVE_RATE, Defect, Intended

    performance = (Intended("auroc"), Intended("macro_auroc"))

    def shortcut(artifact: str, on: str, intended: tuple) -> Defect:
        shortcuts = {a: {"p_pos": DEFAULT_RATE, "p_neg": DEFAULT_RATE} for a in ARTIFACTS}
        shortcuts[artifact] = {"on": on, "p_pos": SHORTCUT_STRENGTH, "p_neg": NEGATIVE_RATE}
        return Defect(f"shortcut_{artifact}", "trained",
                      f"trained where the {artifact.replace('_', ' ')} is on {SHORTCUT_STRENGTH:.0%} of the images with "
                      f"{on.replace('_', ' ')} and {NEGATIVE_RATE:.0%} of the others", intended,
                      dataset_options={"shortcuts": shortcuts})

    defects = [
        Defect("shuffled_labels", "trained", "trained on permuted label rows (it can only memorise)", performance,
               dataset="shuffled-labels", dataset_options={"label_seed": 0}),
        Defect("undertrained", "trained", "three optimizer steps on 96 images (recipe undertrained)", performance,
               recipe="undertrained"),
        # the drain lies inside the lung: what it costs shows when the artifact is decorrelated from the finding
        shortcut("chest_drain", "pneumothorax",
                 (Intended("decorrelated_auroc_drop", params=(("finding", "pneumothorax"),)),)),
        # the frame lies outside the anatomy: the decorrelated drop of every finding and the heat on the border
        shortcut("border", "any_finding",
                 (Intended("decorrelated_auroc_drop"), Intended("outside_anatomy_attribution",
                                                                params=(("region", "border"),)))),
    ]
    return {d.name: d for d in defects}


def defect_entry(entry: Any, defect: Any) -> Any:
    """The zoo entry of trained defect ``defect`` built from healthy ``entry`` (same architecture, recipe and seed
    unless the defect names its own recipe or data)."""
    from dataclasses import replace

    from harness.models.provision import shuffled_label_twin

    if defect.dataset == "shuffled-labels":
        return shuffled_label_twin(entry, defect.dataset_options["label_seed"])
    return replace(entry, name=f"{entry.name}_{defect.name}", recipe=defect.recipe or entry.recipe,
                   dataset_options={**entry.dataset_options, **defect.dataset_options})


def measure(suite: Any, models: tuple[str, ...], profile: str | None, checkpoint_dir: str | None,
            seeds: tuple[int, ...] = (0,), reported: bool = False, defects: tuple[str, ...] = (),
            healthy: bool = True) -> list[dict]:
    """One record per gated (check, explainer) of ``suite`` and healthy model (each with each of ``seeds``),
    on the calib world; ``reported``: reported-only items (severity warn) too. Then each of ``defects``
    on the first model (seed 0), on the items it touches (an explainer defect: the items of the explainers it
    replaces; a trained defect (:func:`multilabel_defects`, trained on first use): every item, on its own model),
    marked ``defect`` and ``intended``. ``healthy=False``: the defects only."""
    from harness.explain import list_explainers
    from harness.models.zoo import get_zoo_entry
    from harness.session import HarnessSession

    list_explainers()
    session = HarnessSession(profile=profile, checkpoint_dir=checkpoint_dir)
    records = []
    names = add_seed_variants(session, models, seeds)
    for model in names if healthy else ():
        ctx, world_seed = calib_context(session, model, suite)
        records += _measure_context(suite, ctx, world_seed, reported)
    trained = multilabel_defects()
    for name in defects:
        if name in trained:  # its own model, on its own data's calib world (a shortcut keeps its artifact there)
            defect = trained[name]
            ctx, world_seed = calib_context(session, add_entry(session, defect_entry(get_zoo_entry(models[0]),
                                                                                     defect)), suite)
            records += _measure_context(suite, ctx, world_seed, reported, defect)
            continue
        ctx, world_seed = calib_context(session, names[0], suite)
        defect, defective = defect_context(ctx, name)
        records += _measure_context(suite, defective, world_seed, reported, defect)
    return records


def defect_context(ctx: Any, name: str) -> tuple[Any, Any]:
    """``ctx``'s model with defect ``name`` of the zoo (``xai-harness list defects``): its explainers replaced by
    the stand-ins, or its weights re-initialised (no twins: a randomised network has no previous epoch)."""
    from harness.explain.context import ModelContext, create_context_explainer
    from harness.meta.defects import get_defect, randomised_copy

    defect = get_defect(name)
    if defect.kind not in UNTRAINED_KINDS:
        raise SystemExit(f"defect {name!r} is of kind {defect.kind!r}: it is trained on binary synth-cxr data; "
                         f"usable here: the {' and '.join(UNTRAINED_KINDS)} kinds of the zoo and the multi-label "
                         f"trained defects {', '.join(multilabel_defects())}")
    label = f"{ctx.name}:{name}"
    if defect.kind == "weights":
        model = randomised_copy(ctx.model, ctx.manifest["architecture"], seed=1234)
        return defect, ModelContext(label, model, {**ctx.manifest, "weights": "randomised"}, batch_size=ctx.batch_size,
                                    seed=ctx.seed)
    defective = ModelContext(label, ctx.model, ctx.manifest, ctx.twins, None, ctx.batch_size, seed=ctx.seed)
    defective.explainers.update(defect.explainers(lambda explainer: create_context_explainer(explainer, ctx.seed)))
    return defect, defective


def _measure_context(suite: Any, ctx: Any, world_seed: int, reported: bool, defect: Any = None) -> list[dict]:
    from harness.checks.registry import get_check
    from harness.checks.runner import error_result, run_check
    from harness.explain import EXPLAINERS

    records = []
    profile_name = str(ctx.manifest.get("profile", ""))
    for check in suite.checks:
        condition, params, skip = check.for_model(ctx.name, ctx.architecture, profile_name, ctx.family)
        if skip or (condition.severity != "fail" and not reported):
            continue
        category = get_check(check.check).category
        for explainer in check.explainers:
            name = None if explainer == "-" else explainer
            if name is not None and EXPLAINERS.meta(name).get("is_control"):
                continue  # controls judge the condition, not the model
            if defect is not None and defect.replaces and name not in defect.replaces:
                continue  # an explainer defect leaves the other items as the healthy model's
            started = time.perf_counter()
            try:
                result = run_check(ctx, suite=suite.name, check_id=check.id, check=check.check, explainer=name,
                                   params=params, condition=condition)
            except Exception as err:  # noqa: BLE001  (an error record, as in a suite run)
                result = error_result(suite=suite.name, model=ctx.name, architecture=ctx.architecture,
                                      explainer=name, check_id=check.id, category=category,
                                      condition=condition, error=err)
            record = {"check": check.id, "registered": check.check, "subject": ctx.name,
                      "explainer": explainer, "value": _number(result.value),
                      "ci_low": _number(result.ci_low), "ci_high": _number(result.ci_high),
                      "verdict": result.verdict.value, "n": result.n, "message": result.message,
                      "world_seed": world_seed, "seconds": round(time.perf_counter() - started, 2)}
            if defect is not None:
                record.update(defect=defect.name, intended=defect.intends(check.check, category, params))
            records.append(record)
            print(f"{ctx.name[-24:]:24s} {check.id:45s} {explainer:10s} {result.verdict.value:5s} ci "
                  f"[{result.ci_low:.3f}, {result.ci_high:.3f}] ({record['seconds']}s)", flush=True)  # progress
    return records


def propose(suite: Any, records: list[dict], reported: bool = False) -> list[dict]:
    """Per gated check (``reported``: and per reported-only one): the healthy values, the threshold beyond the
    worst of them and its margin; and each measured defect's value, whether the threshold catches it, and the
    margin of the least caught intended defect (negative: an intended defect passes)."""
    healthy_records = [r for r in records if not r.get("defect")]
    out = []
    for check in suite.checks:
        if check.condition.severity != "fail" and not reported:
            continue
        gate_on, direction = check.condition.gate_on, check.condition.direction
        healthy = {f"{r['subject']}/{r['explainer']}".removesuffix("/-"): r[gate_on] for r in healthy_records
                   if r["check"] == check.id and _finite(r[gate_on])}
        defective = [r for r in records if r.get("defect") and r["check"] == check.id and _finite(r[gate_on])]
        entry = {"check": check.id, "registered": check.check, "gate_on": gate_on, "direction": direction,
                 "current": check.condition.threshold, "healthy": healthy,
                 "defects": {f"{r['defect']}/{r['explainer']}".removesuffix("/-"): r[gate_on] for r in defective},
                 "defect_margin": None, "separates": False}
        if not healthy:
            problems = sorted({r["message"] for r in records if r["check"] == check.id})
            out.append({**entry, "proposed": check.condition.threshold, "healthy_margin": None,
                        "note": "no healthy value: threshold kept; " + "; ".join(problems)})
            continue
        sign = 1.0 if direction == ">=" else -1.0
        worst = min(sign * v for v in healthy.values())
        threshold = worst - max(MIN_BUFFER, RELATIVE_BUFFER * abs(worst), _spread(healthy_records, check.id, gate_on))
        proposed = round(sign * math.floor(round(threshold * 1000, 6)) / 1000, 3)  # 3 decimals, towards passing
        vacuous = _cannot_fail(check.check, direction, proposed)
        caught = sorted(k for k, v in entry["defects"].items() if sign * (v - proposed) < 0)
        intended = [sign * (r[gate_on] - proposed) for r in defective if r.get("intended")]
        evidence = (f"catches {', '.join(caught)}" if caught else "catches none of the measured defects") \
            if defective else "no defect evidence yet"
        out.append({**entry, "proposed": proposed, "healthy_margin": round(worst - sign * proposed, 4),
                    "defect_margin": round(-max(intended), 4) if intended else None,
                    "separates": bool(intended) and max(intended) < 0, "caught": caught,
                    "vacuous": vacuous, "note": f"{evidence}; beyond the worst healthy value" + (
                        "; the threshold lies at the metric's bound or accepts chance level, so it cannot fail "
                        "meaningfully: the item is reported (severity warn)" if vacuous else "")})
    return out


def defect_summary(checks: list[dict], records: list[dict]) -> list[str]:
    """Per measured defect: how many of its intended items (and of all its items) the proposed thresholds catch."""
    proposed = {c["check"]: c for c in checks}
    lines = []
    for name in dict.fromkeys(r["defect"] for r in records if r.get("defect")):
        mine = [r for r in records if r.get("defect") == name and r["check"] in proposed]
        def caught(r):
            return f"{name}/{r['explainer']}".removesuffix("/-") in proposed[r["check"]].get("caught", [])
        intended = [r for r in mine if r.get("intended")]
        lines.append(f"{name}: intended items caught {sum(map(caught, intended))} of {len(intended)}; "
                     f"all items caught {sum(map(caught, mine))} of {len(mine)}")
    return lines


def _spread(records: list[dict], check_id: str, gate_on: str) -> float:
    """How far the gated value of a healthy model moves on other patients: the widest 95% bootstrap CI
    (ci_high - ci_low) among the healthy records of the check (0 when none has one).

    A gate reads a CI bound on a new set of patients; between two independent patient samples an estimate
    moves by up to about 1.4 CI half-widths (95%), so a threshold nearer to the calib value than one CI
    width false-fails healthy models on test: 20 of 88 gates did so at the 10% rule (2026-12-01).
    """
    widths = [r["ci_high"] - r["ci_low"] for r in records
              if r["check"] == check_id and _finite(r.get("ci_low")) and _finite(r.get("ci_high"))]
    return max(widths, default=0.0)


def _cannot_fail(registered: str, direction: str, threshold: float) -> bool:
    """Whether a threshold lies at or beyond the bound of a metric that lives in [0, 1] (it can never fail),
    or accepts chance level (a chance-corrected similarity at or below 0)."""
    if registered in CHANCE_CORRECTED:
        return direction == ">=" and threshold <= 0.0
    if registered not in BOUNDED:
        return False
    return threshold <= 0.0 if direction == ">=" else threshold >= 1.0


def _number(x: float) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    return float(x) if _finite(x) else None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def main(argv: list[str] | None = None) -> int:
    from harness.meta.report import SCHEMA, machine, write_json
    from harness.suites import load_suite

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default=str(SUITE))
    parser.add_argument("--models", default=",".join(HEALTHY), help="healthy zoo models (comma-separated)")
    parser.add_argument("--seeds", default="0", help="seeds of each model (comma-separated; seed s > 0 trains "
                        "<model>_s<s> on first use, about 10 minutes each on 2 CPU cores)")
    parser.add_argument("--merge", metavar="FILE", help="add the records of an earlier run (its calibration file) "
                        "for models this run does not measure, then propose from all of them")
    parser.add_argument("--profile", choices=("cpu", "gpu"), default=None)
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--records", help="propose from the records of an earlier run instead of measuring again")
    parser.add_argument("--out", help="calibration file (default: the file the suite cites)")
    parser.add_argument("--apply", action="store_true", help="also write the thresholds into the suite file")
    parser.add_argument("--defects", default="", help="comma-separated defects, measured on the first model: the "
                        "zoo's that need no training (explainer stand-ins, weights_randomised) and the multi-label "
                        f"trained ones ({', '.join(multilabel_defects())}, trained on first use): which items catch them")
    parser.add_argument("--defects-only", action="store_true", help="measure the --defects only (the healthy "
                        "records come from --merge)")
    parser.add_argument("--include-reported", action="store_true", help="measure and calibrate the reported-only "
                        "items (severity warn) too, e.g. a suite whose gates are all provisional (cxr14 today)")
    args = parser.parse_args(argv)
    suite = load_suite(args.suite, calibrating=True)
    models = tuple(m for m in args.models.split(",") if m)
    started = time.perf_counter()
    if args.records:  # the measurements of an earlier run (its machine and time), proposed again
        saved = json.loads(Path(args.records).read_text())
        records, models, profile = saved["records"], tuple(saved["population"]["healthy"]), saved["profile"]
        measured_on, seconds = saved["machine"], saved["seconds"]["evaluation"]
    else:
        seeds = tuple(int(x) for x in args.seeds.split(",") if x.strip())
        defects = tuple(d.strip() for d in args.defects.split(",") if d.strip())
        records = measure(suite, models, args.profile, args.checkpoint_dir, seeds, args.include_reported, defects,
                          healthy=not args.defects_only)
        models = () if args.defects_only else tuple(seed_name(m, s) for m in models for s in seeds)
        profile = args.profile or ("gpu" if __import__("torch").cuda.is_available() else "cpu")
        measured_on, seconds = machine(), round(time.perf_counter() - started)
    if args.merge:  # e.g. seed 0 measured earlier, seed 1 now: one population
        earlier = json.loads(Path(args.merge).read_text())
        measured = {r["subject"] for r in records}
        kept = [r for r in earlier["records"] if r["subject"] not in measured]
        records = kept + records
        models = tuple(dict.fromkeys([r["subject"] for r in kept if not r.get("defect")] + list(models)))
    checks = propose(suite, records, args.include_reported)
    for line in defect_summary(checks, records):
        print(line)
    out = Path(args.out) if args.out else (suite.calibration or SUITE.parent / "calibration" / f"cxr14_{profile}.json")
    write_json(out, {
        "schema": SCHEMA, "suite": suite.name, "profile": profile,
        "split": "calib (the test split of a second synth-cxr14 world, seed from calibration_world: patients "
                 "disjoint from every verdict's test split)",
        "population": {"healthy": list(models),
                       "defects": list(dict.fromkeys(r["defect"] for r in records if r.get("defect")))},
        "defect_summary": defect_summary(checks, records), "machine": measured_on,
        "seconds": {"evaluation": seconds}, "rule": RULE,
        "script": "benchmarks/calibrate_cxr14.py", "checks": checks, "records": records,
    })
    print(f"calibration written to {out}")
    if args.apply:
        from harness.meta.apply import apply_thresholds

        changes = apply_thresholds(suite.path, {c["check"]: (c["gate_on"], c["direction"], c["proposed"])
                                                for c in checks})
        print(f"{suite.path}: {len(changes)} threshold(s) changed" + "".join(f"\n  {c}" for c in changes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
