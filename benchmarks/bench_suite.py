"""Wall time of a whole suite's checks for one model on N test images (training excluded).

    python benchmarks/bench_suite.py --model resnet18 --images 500             # CPU target: < 60 s
    python benchmarks/bench_suite.py --model resnet18 --images 1000 --profile gpu  # GPU target: < 60 s

The model is trained (or loaded) first; then every item of the suite (check x explainer) runs through
the same HarnessSession the pytest plugin uses, timed one by one. The test split is generated with
more patients (``n_patients``) so it holds at least ``--images`` images; those patients are new
renderings, so the values are not the calibrated ones, only the times are the point here.
Writes benchmarks/results/suite_<device>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections import Counter
from pathlib import Path

import torch

from common import record, write_results  # noqa: I001
from harness.session import HarnessSession
from harness.suites import load_suite

IMAGES_PER_PATIENT_IN_TEST = 0.44  # synth-cxr: ~307 test images from 700 patients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--suite", default=str(Path(__file__).resolve().parents[1] / "suites" / "pneumothorax.yaml"))
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--profile", choices=("cpu", "gpu"))
    args = parser.parse_args()

    session = HarnessSession(profile=args.profile)
    base = session.context(args.model)  # trains on first use: not timed
    options = dict(base.manifest["dataset"].get("options", {}))
    options["n_patients"] = max(700, math.ceil(args.images / IMAGES_PER_PATIENT_IN_TEST * 1.05))
    manifest = {**base.manifest, "dataset": {**base.manifest["dataset"], "options": options}}
    ctx = dataclasses.replace(base, manifest=manifest, max_images=args.images, _datasets={}, _probs={}, _maps={})
    session.add_context(ctx)
    suite = load_suite(args.suite)

    start = time.perf_counter()
    ctx.dataset("test"), ctx.dataset("test_decorrelated")
    data_seconds = time.perf_counter() - start
    times, verdicts = [], Counter()
    for check in suite.checks:
        for explainer in check.explainers:  # "-" marks a check without an explainer
            t0 = time.perf_counter()
            result = session.run_item(suite, check, args.model, None if explainer == "-" else explainer)
            times.append((f"{check.id}[{explainer}]", time.perf_counter() - t0))
            verdicts[result.verdict.value] += 1
            if result.verdict.value in ("fail", "error", "skip"):
                print(f"  {result.verdict.value}: {check.id}[{explainer}]: {result.message[:160]}")
    total = time.perf_counter() - start
    device = session.device
    n_test = len(ctx.dataset("test"))
    print(f"{len(times)} items on {n_test} test images: {total:.1f} s (data {data_seconds:.1f} s); {dict(verdicts)}")
    for name, seconds in sorted(times, key=lambda t: -t[1])[:10]:
        print(f"  {seconds:6.2f} s  {name}")
    records = [record(f"{suite.name} suite, {args.model}, {n_test} test images, {len(times)} items", device, total,
                      "s", data_generation_s=data_seconds, verdicts=dict(verdicts),
                      per_item_s={name: round(s, 3) for name, s in times},
                      threads=torch.get_num_threads())]
    print(write_results("suite", device, records, note="training excluded; data generation included"))


if __name__ == "__main__":
    main()
