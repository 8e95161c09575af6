"""Run one check on one model context and judge it: Measurement + Condition -> CheckResult."""

from __future__ import annotations

import math
import traceback
from typing import Any

from harness.checks.condition import Condition
from harness.checks.context import ModelContext
from harness.checks.registry import CheckSkipped, get_check
from harness.checks.result import CheckResult, Verdict
from harness.explain.base import ExplainerUnsupported


def run_check(ctx: ModelContext, *, suite: str, check_id: str, check: str, explainer: str | None,
              params: dict[str, Any], condition: Condition) -> CheckResult:
    """Measure ``check`` with ``params`` and judge it; a CheckSkipped becomes verdict ``skip``."""
    spec = get_check(check)
    seed = int(params.get("seed", 0))
    base = dict(suite=suite, model=ctx.name, architecture=ctx.architecture, explainer=explainer or "-",
                check=check_id, category=spec.category, threshold=condition.threshold,
                direction=condition.direction, gate_on=condition.gate_on, seed=seed)
    try:
        m = spec.fn(ctx, explainer, **params)
    except (CheckSkipped, ExplainerUnsupported) as why:
        return CheckResult(metric=check, value=math.nan, ci_low=math.nan, ci_high=math.nan,
                           verdict=Verdict.SKIP, n=0, message=str(why), **base)
    verdict = condition.judge(m.value, m.ci_low, m.ci_high)
    message = condition.sentence(m.metric, m.value, m.ci_low, m.ci_high, m.n)
    if explainer and ctx.explainer(explainer).is_control:
        verdict, message = judge_control(verdict, message)
    return CheckResult(metric=m.metric, value=m.value, ci_low=m.ci_low, ci_high=m.ci_high, verdict=verdict,
                       n=m.n, message=message, details=m.details, **base)


def judge_control(verdict: Verdict, message: str) -> tuple[Verdict, str]:
    """A control (model-independent map) is expected to FAIL every explanation check.

    Run beside the real explainers (Binder et al. 2023), it shows the check can tell an explanation
    from an uninformative map: a control that fails is a pass; a control that passes is a warning
    that the condition is too lax to mean anything.
    """
    if verdict in (Verdict.FAIL, Verdict.WARN):
        return Verdict.PASS, f"control rejected, as it should be: {message}"
    if verdict is Verdict.PASS:
        return Verdict.WARN, f"the control PASSES, so this condition cannot tell an explanation from noise: {message}"
    return verdict, message


def error_result(*, suite: str, model: str, architecture: str, explainer: str | None, check_id: str,
                 category: str, condition: Condition, error: BaseException) -> CheckResult:
    """The record of a check that raised: verdict ``error`` with the exception as its message."""
    return CheckResult(suite=suite, model=model, architecture=architecture, explainer=explainer or "-",
                       check=check_id, category=category, metric="-", value=math.nan, ci_low=math.nan,
                       ci_high=math.nan, threshold=condition.threshold, direction=condition.direction,
                       gate_on=condition.gate_on, verdict=Verdict.ERROR, n=0, seed=0,
                       message=f"{type(error).__name__}: {error}",
                       details={"traceback": "".join(traceback.format_exception(error))})
