"""Checks stage: a check measures a value with a CI; a condition judges it (pass/warn/fail/error/skip)."""

from __future__ import annotations

from harness.checks.api import evaluate, expect, measure
from harness.checks.condition import Condition
from harness.checks.registry import CHECKS, CheckSkipped, CheckSpec, Measurement, get_check, list_checks, register_check
from harness.checks.result import CATEGORIES, CheckResult, Verdict

__all__ = [
    "CATEGORIES", "CHECKS", "CheckResult", "CheckSkipped", "CheckSpec", "Condition", "Measurement",
    "Verdict", "evaluate", "expect", "get_check", "list_checks", "measure", "register_check",
]
