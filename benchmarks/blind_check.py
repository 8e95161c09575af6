"""Healthy models judged after the thresholds were fixed: false fails on seeds no decision saw.

Merges the records of `xai-harness meta --seeds ... --defects none` runs (their ``records.json``) into
``benchmarks/results/meta_cpu_unseen_seeds.json``: per model whether it was blind (trained and judged
only after every threshold and gate decision) or seen (its verdicts were known when a later decision
was taken), its false fails, and every record.

    xai-harness meta --profile cpu --families vit,dense --seeds 5,6 --defects none --report-dir R --results /tmp/m.json
    .venv/bin/python benchmarks/blind_check.py R/meta-*/records.json --blind vit_tiny_convstem_s5,... --note "..."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from common import machine  # noqa: I001  (benchmarks/ is on sys.path as a script; common puts the repo there)
from harness.atomic import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("subject", "defect", "family", "seed", "check", "explainer", "value", "ci_low", "ci_high", "verdict", "role")


def summarise(records: list[dict], blind: set[str]) -> dict:
    gated = [r for r in records if r["defect"] == "healthy" and r.get("role", "gate") == "gate"]
    per_model: dict[str, dict] = {}
    for r in gated:
        model = per_model.setdefault(r["subject"], {"blind": r["subject"] in blind, "gated_items": 0, "false_fails": []})
        model["gated_items"] += 1
        if r["verdict"] in ("fail", "error"):
            explainer = r.get("explainer")
            model["false_fails"].append(r["check"] + (f" ({explainer})" if explainer not in (None, "-") else ""))
    models = sorted(per_model)
    return {"healthy_models": models, "blind_models": sorted(blind & set(models)),
            "healthy_false_fails": [f"{m}: {f}" for m in models for f in per_model[m]["false_fails"]],
            "models_with_a_false_fail": [m for m in models if per_model[m]["false_fails"]],
            "gated_items_judged": len(gated), "per_model": {m: per_model[m] for m in models}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", help="records.json files of meta runs")
    parser.add_argument("--blind", default="", help="comma-separated models trained and judged after every decision")
    parser.add_argument("--note", required=True)
    parser.add_argument("--seconds", type=float, default=None, help="evaluation seconds, all runs together")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "meta_cpu_unseen_seeds.json"))
    args = parser.parse_args(argv)
    records = []
    for path in args.records:
        records += [{k: r.get(k) for k in KEYS} for r in json.loads(Path(path).read_text())["records"]]
    blind = {b.strip() for b in args.blind.split(",") if b.strip()}
    out = {"schema": 2, "suite": "pneumothorax", "profile": "cpu", "split": "test", "note": args.note,
           "machine": machine(torch.device("cpu")), **summarise(records, blind),
           "seconds": {"evaluation": args.seconds}, "records": records}
    atomic_write_text(Path(args.out), json.dumps(out, indent=1) + "\n")
    print(f"{args.out}: {len(out['healthy_models'])} models, {out['gated_items_judged']} gated items, "
          f"false fails: {out['healthy_false_fails'] or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
