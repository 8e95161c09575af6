"""Checks stage: a check measures a value with a CI; a condition judges it (pass/warn/fail/error/skip)."""

from __future__ import annotations

from typing import Any

from harness.checks.condition import Condition
from harness.checks.registry import (
    CHECKS,
    CheckInvalid,
    CheckSkipped,
    CheckSpec,
    Measurement,
    get_check,
    list_checks,
    register_check,
)
from harness.checks.result import CATEGORIES, CheckResult, Verdict

__all__ = [
    "CATEGORIES", "CHECKS", "CheckInvalid", "CheckResult", "CheckSkipped", "CheckSpec", "Condition", "Measurement",
    "Verdict", "evaluate", "expect", "get_check", "list_checks", "measure", "register_check",
]


def __getattr__(name: str) -> Any:
    """``measure``, ``evaluate``, ``expect`` load torch: imported on first use, so the plugin stays cheap."""
    if name in ("measure", "evaluate", "expect"):
        from harness.checks import api

        return getattr(api, name)
    raise AttributeError(f"module 'harness.checks' has no attribute {name!r}")
