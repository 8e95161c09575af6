"""Two harness jobs on one machine: with thread sharing they take about twice one job's time, not ten times.

A job is a fixed amount of resnet18 training (``--steps`` steps of batch 32 at 64x64, the cpu
profile's model step) in its own process, which calls :func:`harness.threads.share_threads` at start
and every 10 steps (as the trainer does every epoch). Scenarios, each the median of ``--trials``:

- ``alone``: one job;
- ``two, shared``: two jobs started together, each taking ``cores // live jobs`` threads;
- ``two, not shared``: two jobs each forced to every core (``XAI_HARNESS_THREADS=<cores>``), what
  torch does by default.

The figure is the makespan (first start to last end) over ``alone``. The jobs registry lives in a
temporary ``XAI_HARNESS_CACHE``, so other processes on the machine do not count. Results:
``benchmarks/results/threads_cpu.json``. Run alone on an idle machine:

    .venv/bin/python benchmarks/bench_threads.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from common import record, write_results  # noqa: I001  (benchmarks/ is on sys.path as a script)
from harness.threads import cores_available

JOB = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import torch
    from harness.models import create_model
    from harness.threads import share_threads

    steps, go = int(sys.argv[1]), Path(sys.argv[2])
    share_threads()
    torch.manual_seed(0)
    model = create_model("resnet18", img_size=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images, labels = torch.rand(32, 1, 64, 64), torch.arange(32) % 2
    while not go.exists():
        time.sleep(0.01)
    started = time.time()
    for step in range(steps):
        if step % 10 == 0:
            threads = share_threads()
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    print(started, time.time(), threads)
""")


def run_jobs(n: int, steps: int, shared: bool) -> tuple[float, list[int]]:
    """Makespan (s) of ``n`` concurrent jobs and the thread count each ended with."""
    with tempfile.TemporaryDirectory() as cache:
        env = {k: v for k, v in os.environ.items() if k not in ("XAI_HARNESS_THREADS", "OMP_NUM_THREADS")}
        env["XAI_HARNESS_CACHE"] = cache
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
        if not shared:
            env["XAI_HARNESS_THREADS"] = str(cores_available())
        go = Path(cache) / "go"
        procs = [subprocess.Popen([sys.executable, "-c", JOB, str(steps), str(go)], env=env, stdout=subprocess.PIPE,
                                  text=True) for _ in range(n)]
        time.sleep(8)  # every job imported torch, built its model and registered
        go.write_text("")
        outs = [p.communicate()[0].split() for p in procs]
        if any(p.returncode for p in procs):
            raise RuntimeError("a benchmark job failed")
    starts, ends = [float(o[0]) for o in outs], [float(o[1]) for o in outs]
    return max(ends) - min(starts), [int(o[2]) for o in outs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per job")
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args(argv)
    scenarios = {"alone": (1, True), "two, shared": (2, True), "two, not shared": (2, False)}
    seconds, threads = {}, {}
    for name, (n, shared) in scenarios.items():
        runs = [run_jobs(n, args.steps, shared) for _ in range(args.trials)]
        seconds[name] = statistics.median(r[0] for r in runs)
        threads[name] = runs[0][1]
        print(f"{name:18s} {seconds[name]:7.1f} s  (trials: {', '.join(f'{r[0]:.1f}' for r in runs)}; "
              f"threads per job: {threads[name]})", flush=True)
    device = torch.device("cpu")
    records = [record(f"makespan/{name}", device, seconds[name], "s", jobs=scenarios[name][0],
                      shared=scenarios[name][1], threads_per_job=threads[name],
                      ratio_to_alone=seconds[name] / seconds["alone"]) for name in scenarios]
    for name in ("two, shared", "two, not shared"):
        print(f"{name}: {seconds[name] / seconds['alone']:.2f}x one job alone")
    note = (f"{args.steps} resnet18 training steps (batch 32, 64x64, fp32) per job, {cores_available()} cores; "
            f"median of {args.trials} trials; run alone on an idle machine")
    print(write_results("threads", device, records, note=note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
