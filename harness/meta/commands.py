"""``xai-harness calibrate`` and ``xai-harness meta``: the harness judged on its own population."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.meta.families import CALIBRATION_SEEDS

DEFAULT_SUITE = Path(__file__).resolve().parents[2] / "suites" / "pneumothorax.yaml"


class MetaUsageError(ValueError):
    """The command line asks for something the run cannot do (an unknown check, --checks without records)."""


def add_arguments(parser: argparse.ArgumentParser, *, meta: bool) -> None:
    parser.add_argument("--suite", default=str(DEFAULT_SUITE), help="the suite to calibrate or prove")
    parser.add_argument("--families", default="all", help="comma-separated families (residual, dense, vit) or all")
    parser.add_argument("--defects", default="all", help="comma-separated defects (see `xai-harness list defects`)"
                        " or all, or none")
    parser.add_argument("--profile", choices=("cpu", "gpu"), help="default: gpu if CUDA is available, else cpu")
    parser.add_argument("--checkpoint-dir", help="checkpoint store root")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--checks", metavar="ID[,ID...]", help="evaluate only these suite checks (after adding or "
                        "changing them) and take every other record from --records" + ("" if meta else
                        "; without --records, merge their proposals into the calibration file"))
    if meta:
        parser.add_argument("--seeds", default="0,1,2", help="healthy seeds per family")
        parser.add_argument("--report-dir", default="reports", help="where the meta report folder goes")
        parser.add_argument("--results", help="results file (default benchmarks/results/meta_<device>.json)")
        parser.add_argument("--records", metavar="PATH", help="judge the records of an earlier meta run (its "
                            "records.json) with the suite's current thresholds instead of evaluating again")
    else:
        parser.add_argument("--seeds", default=",".join(map(str, CALIBRATION_SEEDS)),
                            help="healthy seeds per family in the calibration population (the meta run holds out 1, 2)")
        parser.add_argument("--out", help="calibration file (default: the file the suite cites, else "
                            "suites/calibration/<suite>_<profile>.json)")
        parser.add_argument("--records", metavar="PATH", help="propose from the records of an earlier calibrate run "
                            "(its records.json) instead of evaluating again")
        parser.add_argument("--report-dir", default="reports", help="where the run's records.json goes")
        parser.add_argument("--apply", action="store_true", help="also write the proposed thresholds into the "
                            "suite file (its comments and layout kept)")


def _selection(args, *, calibrating: bool = False) -> tuple[Any, list, list, tuple[int, ...]]:
    from harness.meta.defects import get_defect, list_defects
    from harness.meta.families import FAMILIES, get_family
    from harness.suites import load_suite

    suite = load_suite(args.suite, calibrating=calibrating)
    families = list(FAMILIES.values()) if args.families == "all" else \
        [get_family(n.strip()) for n in args.families.split(",") if n.strip()]
    if args.defects == "all":
        defects = list_defects()
    elif args.defects == "none":
        defects = []
    else:
        defects = [get_defect(n.strip()) for n in args.defects.split(",") if n.strip()]
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    return suite, families, defects, seeds


def _console():
    """A console that stays readable when the output is a file (a log, CI): wide tables are not folded."""
    import sys

    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def _provider(args):
    from harness.models import CheckpointStore, ModelProvider

    return ModelProvider(profile=args.profile, store=CheckpointStore(args.checkpoint_dir),
                         progress=not args.no_progress)


def calibrate_command(args: argparse.Namespace) -> int:
    import json

    from harness.meta.calibrate import propose
    from harness.meta.report import SCHEMA, machine, write_json
    from harness.meta.run import PopulationRun, population, reintend, rejudge, run_population
    from harness.report.results_file import new_run_id

    console = _console()
    suite, families, defects, seeds = _selection(args, calibrating=True)
    provider = _provider(args)
    if args.records:
        saved = json.loads(Path(args.records).read_text())
        records = rejudge(reintend(saved["records"]), suite, provider.profile)  # the suite's gates as they are now
        run = PopulationRun("calib", records, saved.get("train_seconds", 0.0), saved.get("evaluate_seconds", 0.0),
                            saved.get("subjects", []))
        if args.checks:
            run = _reevaluate(args, run, suite, families, defects, seeds, provider, console, split="calib")
            _save_records(console, Path(args.report_dir) / f"calibrate-{new_run_id()}", run)
    elif args.checks:  # only these checks, on the whole population; the file keeps every other check's proposal
        run = _evaluate_only(args, suite, families, defects, seeds, provider, console, split="calib")
        _save_records(console, Path(args.report_dir) / f"calibrate-{new_run_id()}", run)
    else:
        run = run_population(suite, population(families, defects, seeds), provider, split="calib", console=console,
                             progress=not args.no_progress)
        _save_records(console, Path(args.report_dir) / f"calibrate-{new_run_id()}", run)
    proposals = propose(run.records, suite)
    _print_proposals(console, proposals)
    out = Path(args.out) if args.out else (suite.calibration or
                                           Path(suite.path).parent / "calibration" / f"{suite.name}_{provider.profile}.json")
    entries = [p.to_dict() for p in proposals]
    updates = []
    if args.checks and not args.records and out.exists():
        entries, updates = _merged(json.loads(out.read_text()), entries, suite, run, out)
    write_json(out, {
        "schema": SCHEMA, "suite": suite.name, "profile": provider.profile, "split": "calib",
        "population": {"families": {f.name: f.architecture for f in families}, "healthy_seeds": list(seeds),
                       "defects": [d.name for d in defects]},
        "machine": machine(), "seconds": {"training": round(run.train_seconds), "evaluation": round(run.evaluate_seconds),
                                          "total": round(run.train_seconds + run.evaluate_seconds)},
        "rule": "separating: midpoint between the worst healthy and the least defective intended defect (half the gap "
                "is the margin each side); otherwise the threshold is kept if every healthy model clears it, else "
                "moved beyond the worst healthy value by 10% of it (at least 0.01); rounded to 3 decimals",
        "checks": entries, **({"updates": updates} if updates else {}),
    })
    console.print(f"calibration written to {out}", markup=False, soft_wrap=True)
    if args.apply:
        from harness.meta.apply import apply_thresholds, thresholds_of

        changes = apply_thresholds(suite.path, thresholds_of(proposals))
        console.print(f"{suite.path}: {len(changes)} threshold(s) changed" + "".join(f"\n  {c}" for c in changes),
                      markup=False, soft_wrap=True)
    return 0


def _reevaluate(args, run, suite, families, defects, seeds, provider, console, *, split: str):
    """``run`` with the records of ``--checks`` evaluated again on every subject of the selection."""
    from harness.meta.run import replace_checks

    fresh = _evaluate_only(args, suite, families, defects, seeds, provider, console, split=split)
    return replace_checks(run, fresh, _check_ids(args, suite))


def _evaluate_only(args, suite, families, defects, seeds, provider, console, *, split: str):
    """The records of ``--checks`` alone, evaluated on every subject of the selection."""
    from harness.meta.run import population, run_population

    ids = _check_ids(args, suite)
    fresh = run_population(suite.only(ids), population(families, defects, seeds), provider, split=split,
                           console=console, progress=not args.no_progress)
    console.print(f"evaluated {', '.join(ids)} on {len(fresh.subjects)} subjects in {fresh.evaluate_seconds:.0f} s",
                  markup=False, soft_wrap=True)
    return fresh


def _check_ids(args, suite) -> list[str]:
    ids = [c.strip() for c in args.checks.split(",") if c.strip()]
    unknown = sorted(set(ids) - {c.id for c in suite.checks})
    if unknown:
        raise MetaUsageError(f"--checks: {', '.join(unknown)} not in suite {suite.name!r}; its checks: "
                         + ", ".join(c.id for c in suite.checks))
    return ids


def _merged(saved: dict[str, Any], entries: list[dict[str, Any]], suite, run, out: Path):
    """The calibration file's proposals with ``entries`` in place of (or beside) those of the same checks, in
    suite order, and its list of partial updates with this one (which checks, when, how long) appended."""
    from harness.meta.report import machine

    if saved.get("suite") != suite.name:
        raise ValueError(f"{out} calibrates suite {saved.get('suite')!r}, not {suite.name!r}: choose --out")
    fresh = {e["check"]: e for e in entries}
    by_check = {e["check"]: e for e in saved.get("checks", [])} | fresh
    order = [c.id for c in suite.checks]
    merged = sorted(by_check.values(), key=lambda e: order.index(e["check"]) if e["check"] in order else len(order))
    update = {"checks": sorted(fresh), "machine": machine(),
              "seconds": {"training": round(run.train_seconds), "evaluation": round(run.evaluate_seconds)}}
    return merged, [*saved.get("updates", []), update]


def _save_records(console, folder: Path, run) -> None:
    from harness.meta.report import write_json

    write_json(folder / "records.json", {"records": run.records, "train_seconds": run.train_seconds,
                                         "evaluate_seconds": run.evaluate_seconds, "subjects": run.subjects})
    console.print(f"records: {folder / 'records.json'} (re-propose with --records)", markup=False, soft_wrap=True)


def _print_proposals(console, proposals) -> None:
    from rich.table import Table

    table = Table(title="proposed thresholds (calib split)")
    for column in ("check", "gate", "now", "proposed", "worst healthy", "least defective", "margins (h / d)", "note"):
        table.add_column(column, overflow="fold")
    for p in proposals:
        sign = 1 if p.direction == ">=" else -1
        worst = min(p.healthy.values(), key=lambda v: sign * v) if p.healthy else None
        best = max(p.defects.values(), key=lambda v: sign * v) if p.defects else None
        margins = f"{p.healthy_margin:.3f} / " + ("-" if p.defect_margin is None else f"{p.defect_margin:.3f}")
        table.add_row(p.check, f"{p.gate_on} {p.direction}", f"{p.current:g}", f"{p.proposed:g}",
                      "-" if worst is None else f"{worst:.3f}", "-" if best is None else f"{best:.3f}", margins,
                      ("separates. " if p.separates else "") + p.note)
    console.print(table)


def meta_command(args: argparse.Namespace) -> int:
    from harness.atomic import atomic_write_text
    from harness.meta.matrix import detection_matrix
    from harness.meta.report import SCHEMA, machine, matrix_figure, matrix_markdown, write_json
    from harness.meta.run import PopulationRun, population, reintend, rejudge, run_population
    from harness.report.results_file import new_run_id

    console = _console()
    suite, families, defects, seeds = _selection(args)
    provider = _provider(args)
    if args.records:
        import json

        saved = json.loads(Path(args.records).read_text())
        records = rejudge(reintend(saved["records"]), suite, provider.profile)
        run = PopulationRun("test", records, saved.get("train_seconds", 0.0), saved.get("evaluate_seconds", 0.0),
                            saved.get("subjects", []))
        if args.checks:
            run = _reevaluate(args, run, suite, families, defects, seeds, provider, console, split="test")
    elif args.checks:
        raise MetaUsageError("--checks needs --records: the detection matrix needs every check, so the others come "
                         "from an earlier meta run's records.json (its report folder)")
    else:
        run = run_population(suite, population(families, defects, seeds), provider, split="test", console=console,
                             progress=not args.no_progress)
    matrix = detection_matrix(run.records)
    total = run.train_seconds + run.evaluate_seconds
    folder = Path(args.report_dir) / f"meta-{new_run_id()}"
    title = f"xai-harness meta: suite {suite.name}, {provider.profile} profile, verdicts on the test split"
    intro = (f"{len(run.subjects)} subjects ({len(families)} families x {len(seeds)} healthy seeds, "
             f"{len(defects)} defects per family); thresholds from the suite (calibrated on the calib split). "
             f"Training {run.train_seconds:.0f} s, evaluation {run.evaluate_seconds:.0f} s.")
    figure = matrix_figure(matrix, folder / "matrix.png", title=title)
    text = matrix_markdown(matrix, title=title, intro=intro) + f"\n![detection matrix]({figure.name})\n"
    atomic_write_text(folder / "summary.md", text)
    results = Path(args.results) if args.results else \
        Path(__file__).resolve().parents[2] / "benchmarks" / "results" / f"meta_{provider.profile}.json"
    write_json(results, {
        "schema": SCHEMA, "suite": suite.name, "profile": provider.profile, "split": "test", "machine": machine(),
        "population": {"families": {f.name: f.architecture for f in families}, "healthy_seeds": list(seeds),
                       "defects": [d.name for d in defects]},
        "seconds": {"training": round(run.train_seconds), "evaluation": round(run.evaluate_seconds),
                    "total": round(total)},
        "targets": matrix["targets"], "per_check": matrix["per_check"], "per_defect": matrix["per_defect"],
        "healthy_false_fails": matrix["healthy_false_fails"], "rows": matrix["rows"],
        "records": [{k: r[k] for k in ("subject", "defect", "family", "seed", "check", "explainer", "value", "ci_low",
                                        "ci_high", "verdict", "role", "intended")} for r in run.records],
    })
    write_json(folder / "records.json", {"records": run.records, "train_seconds": run.train_seconds,
                                         "evaluate_seconds": run.evaluate_seconds, "subjects": run.subjects})
    _print_outcome(console, matrix, folder, results, total)
    return 0 if all(matrix["targets"].values()) else 1


def _print_outcome(console, matrix, folder: Path, results: Path, seconds: float) -> None:
    from rich.table import Table

    table = Table(title="meta: per check (test split)")
    for column in ("check", "gate", "sensitivity", "caught / intended", "false fails / healthy",
                   "margins (h / d)", "missed"):
        table.add_column(column, overflow="fold")
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for check in matrix["checks"]:
        r = matrix["per_check"][check]
        table.add_row(check, r["gate"], "-" if r["sensitivity"] is None else f"{r['sensitivity']:.2f}",
                      f"{r['caught']} / {r['intended_defects']}", f"{r['false_fails']} / {r['healthy']}",
                      f"{fmt(r['healthy_margin'])} / {fmt(r['defect_margin'])}", ", ".join(r["missed"]) or "-")
    console.print(table)
    targets = matrix["targets"]
    console.print(f"every defect caught on every family: {targets['every_defect_caught_on_every_family']}; "
                  f"zero false fails on healthy models: {targets['zero_false_fails_on_healthy']}; "
                  f"{seconds:.0f} s", markup=False)
    console.print(f"report: {folder / 'summary.md'}; results: {results}", markup=False, soft_wrap=True)
