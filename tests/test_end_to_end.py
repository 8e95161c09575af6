"""The product end to end on the embedded default: train, explain, check, report (marked slow).

Trains resnet18 and resnet18_shortcut on synth-cxr with the CPU profile on first use (about two
minutes each on 2 cores; reused from the checkpoint store afterwards) and runs the shipped suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run_suite(model: str, report_dir: Path) -> tuple[subprocess.CompletedProcess, list[dict]]:
    cmd = [sys.executable, "-m", "pytest", "suites/pneumothorax.yaml", "--model", model, "--profile", "cpu",
           "--report-dir", str(report_dir), "-p", "no:cacheprovider", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    results = json.loads((report_dir / "latest" / "results.json").read_text())
    return proc, results["records"]


def test_resnet18_passes_the_pneumothorax_suite_in_every_category(tmp_path):
    proc, records = run_suite("resnet18", tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert {r["category"] for r in records} == {"performance", "localisation", "randomisation", "stability",
                                                 "checkpoint_consistency", "shortcut", "faithfulness"}
    assert not [r for r in records if r["verdict"] in ("fail", "error")]
    assert list((tmp_path / "latest" / "overlays").glob("*.png"))


def test_resnet18_shortcut_fails_on_shortcuts_while_performance_passes(tmp_path):
    proc, records = run_suite("resnet18_shortcut", tmp_path)
    assert proc.returncode == 1, proc.stdout[-4000:]  # the release gate closes
    verdict = {(r["check"], r["explainer"]): r["verdict"] for r in records}
    performance = [v for (check, _), v in verdict.items() if check.startswith("performance_")]
    assert performance and set(performance) == {"pass"}, verdict  # accuracy alone hides the shortcut
    assert verdict[("shortcut_chest_drain_effect", "-")] == "fail", verdict
    assert verdict[("shortcut_chest_drain_removal", "-")] == "warn", verdict  # reported: its condition fails too
    assert verdict[("shortcut_decorrelated_auroc_drop", "-")] == "fail", verdict
    assert verdict[("shortcut_chest_drain_addition", "-")] == "fail", verdict  # adding a drain alone raises P
    assert verdict[("shortcut_marker_effect", "-")] == "pass", verdict  # it learned the drain, not the marker
