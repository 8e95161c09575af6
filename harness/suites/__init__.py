"""Suites stage: declarative YAML suites parsed into validated check specifications."""

from __future__ import annotations

from harness.suites.loader import Suite, SuiteCheck, SuiteError, load_suite

__all__ = ["Suite", "SuiteCheck", "SuiteError", "load_suite"]
