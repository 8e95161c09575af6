"""Shared helpers of the benchmark scripts: machine facts, timing, and the results-file record format.

Every record has at least ``name, device, torch, value, unit``; a comparison with a peer adds
``peer, peer_value, ratio`` and the agreement measured. Records are written atomically to
``benchmarks/results/<stem>_<device-slug>.json`` with the machine and versions.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from harness.atomic import atomic_write_text  # noqa: E402


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def slug(device: torch.device) -> str:
    return "cpu" if device.type == "cpu" else re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")


def machine(device: torch.device) -> dict[str, Any]:
    """Machine and versions recorded next to every results file."""
    import numpy
    import timm

    info = {"device": device_name(device), "python": platform.python_version(), "torch": torch.__version__,
            "timm": timm.__version__, "numpy": numpy.__version__, "cpu_count": os.cpu_count(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if device.type == "cuda":
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def record(name: str, device: torch.device, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    """One measurement; pass ``peer``, ``peer_value`` to add the ``ratio`` (ours / peer for rates)."""
    rec = {"name": name, "device": device_name(device), "torch": torch.__version__, "value": value, "unit": unit}
    rec.update(extra)
    if "peer_value" in extra and extra["peer_value"]:
        higher_better = unit.endswith("/s")
        rec["ratio"] = value / extra["peer_value"] if higher_better else extra["peer_value"] / value
    return rec


def timed(fn: Callable[[], Any], device: torch.device, *, repeats: int = 3, warmup: int = 1) -> float:
    """Best wall time of ``repeats`` calls (seconds), after ``warmup`` calls; CUDA synchronised."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def write_results(stem: str, device: torch.device, records: list[dict[str, Any]], note: str = "") -> Path:
    """Write ``results/<stem>_<slug>.json`` atomically and print where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stem}_{slug(device)}.json"
    payload = {"machine": machine(device), "note": note, "records": records}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path
