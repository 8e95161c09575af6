"""The shipped suite's thresholds are the ones its calibration file proposes (calib split, never test)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from harness.checks.registry import list_checks
from harness.suites import load_suite

SUITE = Path(__file__).resolve().parents[1] / "suites" / "pneumothorax.yaml"


def test_every_gate_has_the_threshold_its_calibration_proposes():
    suite = load_suite(SUITE)
    assert suite.calibration is not None and suite.calibration.is_file()
    calibration = json.loads(suite.calibration.read_text())
    assert calibration["split"] == "calib" and calibration["suite"] == suite.name
    proposals = {p["check"]: p for p in calibration["checks"]}
    gates = {c.id: c for c in suite.checks if c.condition.severity == "fail"}
    assert set(proposals) == set(gates), "recalibrate: `xai-harness calibrate` after changing the suite's gates"
    for check_id, check in gates.items():
        p = proposals[check_id]
        assert (check.condition.gate_on, check.condition.direction) == (p["gate_on"], p["direction"]), check_id
        assert check.condition.threshold == pytest.approx(p["proposed"]), (
            f"{check_id}: the suite says {check.condition}, its calibration proposes {p['proposed']}")


def test_every_check_can_be_pointed_at_the_calibration_split():
    """Calibration replaces each check's ``split``: a check without one would read test data."""
    missing = [spec.name for spec in list_checks() if "split" not in inspect.signature(spec.fn).parameters]
    assert not missing, missing


def test_the_checks_document_describes_every_registered_check():
    """docs/checks.md says, for every check, what it detects and what it cannot (benchmarks/write_checks_doc.py)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "write_checks_doc.py"
    spec = importlib.util.spec_from_file_location("write_checks_doc", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = {s.name for s in list_checks()}
    assert names <= set(module.PROSE), sorted(names - set(module.PROSE))
    doc = (Path(__file__).resolve().parents[1] / "docs" / "checks.md").read_text()
    assert all(f"## `{name}`" in doc for name in names)
