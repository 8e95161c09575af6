"""Checks as Python functions: every check a YAML suite can run, callable from a test or a notebook.

    result = expect("diffgradcam", xai_model, "gradcam", require="ci_low >= 0.10", split="test")

``measure`` returns the raw Measurement; ``evaluate`` judges it against a condition (controls are
judged inverted, as in suites); ``expect`` raises ``AssertionError`` with the condition's sentence
when the verdict is fail or error, so a plain pytest test gates on it.
"""

from __future__ import annotations

import inspect
from typing import Any

from harness.checks.condition import Condition
from harness.explain.context import ModelContext
from harness.checks.registry import Measurement, get_check
from harness.checks.result import CheckResult, Verdict
from harness.checks.runner import finding_context, run_check


def check_params(check: str, params: dict[str, Any]) -> None:
    """Raise a clear ``TypeError`` naming the valid parameters when ``params`` has an unknown key."""
    valid = [p for p in inspect.signature(get_check(check).fn).parameters if p not in ("ctx", "explainer")]
    unknown = sorted(set(params) - set(valid) - {"finding"})  # finding: every check (multi-label models)
    if unknown:
        raise TypeError(f"check {check!r} has no parameter {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")


def measure(check: str, ctx: ModelContext, explainer: str | None = None, **params: Any) -> Measurement:
    """Run registered check ``check`` on ``ctx`` (with ``explainer`` when it needs one) and return its Measurement."""
    spec = get_check(check)
    check_params(check, params)
    if spec.needs_explainer and not explainer:
        raise TypeError(f"check {check!r} needs an explainer, e.g. measure({check!r}, ctx, 'gradcam')")
    ctx, params = finding_context(ctx, spec, params)
    return spec.fn(ctx, explainer, **params)


def evaluate(check: str, ctx: ModelContext, explainer: str | None = None, *, require: str,
             severity: str = "fail", suite: str = "python", **params: Any) -> CheckResult:
    """Measure ``check`` and judge it against ``require`` (e.g. ``"ci_low >= 0.10"``): a CheckResult."""
    check_params(check, params)
    condition = Condition.parse(require, severity=severity)
    return run_check(ctx, suite=suite, check_id=check, check=check, explainer=explainer, params=params,
                     condition=condition)


def expect(check: str, ctx: ModelContext, explainer: str | None = None, *, require: str,
           severity: str = "fail", **params: Any) -> CheckResult:
    """``evaluate`` and raise ``AssertionError`` (with the condition as a sentence) on fail or error."""
    result = evaluate(check, ctx, explainer, require=require, severity=severity, **params)
    if result.verdict in (Verdict.FAIL, Verdict.ERROR):
        raise AssertionError(f"{check} [{ctx.name} / {explainer or '-'}]: {result.message}")
    return result
