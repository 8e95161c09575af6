"""Run one check on one model context and judge it: Measurement + Condition -> CheckResult."""

from __future__ import annotations

import inspect
import math
import traceback
from typing import Any

from harness.checks.condition import Condition
from harness.checks.registry import CheckInvalid, CheckSkipped, get_check
from harness.checks.result import CheckResult, Verdict
from harness.explain.base import ExplainerUnsupported
from harness.explain.context import ModelContext


def run_check(ctx: ModelContext, *, suite: str, check_id: str, check: str, explainer: str | None,
              params: dict[str, Any], condition: Condition) -> CheckResult:
    """Measure ``check`` with ``params`` and judge it.

    A CheckSkipped (or an explainer that does not support the model) becomes verdict ``skip``; a
    CheckInvalid (the measurement cannot be trusted, e.g. too few images kept) becomes ``error``
    with its message. Controls are judged inverted (:func:`judge_control`); a severity-warn
    condition is reported, never a gate.
    """
    spec = get_check(check)
    ctx, params = finding_context(ctx, spec, params)
    seed = int(params.get("seed", 0))
    is_control = bool(explainer) and ctx.explainer(explainer).is_control
    role = "control" if is_control else ("reported" if condition.severity == "warn" else "gate")
    base = dict(suite=suite, model=ctx.name, architecture=ctx.architecture, explainer=explainer or "-",
                check=check_id, category=spec.category, threshold=condition.threshold,
                direction=condition.direction, gate_on=condition.gate_on, seed=seed, role=role)
    try:
        m = spec.fn(ctx, explainer, **params)
    except (CheckSkipped, ExplainerUnsupported) as why:
        return CheckResult(metric=check, value=math.nan, ci_low=math.nan, ci_high=math.nan,
                           verdict=Verdict.SKIP, n=0, message=str(why), reference={"kind": spec.reference}, **base)
    except CheckInvalid as why:
        return CheckResult(metric=check, value=math.nan, ci_low=math.nan, ci_high=math.nan,
                           verdict=Verdict.ERROR, n=0, message=str(why), reference={"kind": spec.reference}, **base)
    verdict = condition.judge(m.value, m.ci_low, m.ci_high)
    message = condition.sentence(m.metric, m.value, m.ci_low, m.ci_high, m.n, m.n_patients)
    if m.reference:
        message += f" Reference: {_reference_words(m.reference)}."
    if is_control:
        verdict, message = judge_control(verdict, message)
    return CheckResult(metric=m.metric, value=m.value, ci_low=m.ci_low, ci_high=m.ci_high, verdict=verdict,
                       n=m.n, n_patients=m.n_patients, message=message, details=m.details,
                       reference={"kind": spec.reference, **m.reference}, **base)


def finding_context(ctx: ModelContext, spec, params: dict[str, Any]) -> tuple[ModelContext, dict[str, Any]]:
    """A suite item's ``finding`` parameter (multi-label models): the check runs on the model checked on
    that finding (its scores, maps and masks), so one suite can gate every finding without ``--finding``;
    a check with a ``finding`` parameter of its own also receives it (it alone reads it on binary models)."""
    if "finding" not in params:
        return ctx, params
    own = "finding" in inspect.signature(spec.fn).parameters
    if own and not ctx.multilabel:
        return ctx, params
    return ctx.for_finding(str(params["finding"])), params if own else {k: v for k, v in params.items()
                                                                        if k != "finding"}


def judge_control(verdict: Verdict, message: str) -> tuple[Verdict, str]:
    """A control (model-independent map) is expected to be REJECTED by every explanation check.

    Run beside the real explainers (Binder et al. 2023), it shows whether the condition can tell
    an explanation from an uninformative map: rejected, the control *behaved*; accepted, the
    condition is *uninformative* here, and a real explainer's pass of it says nothing. Neither is a
    pass of the model.
    """
    if verdict in (Verdict.FAIL, Verdict.WARN):
        return Verdict.BEHAVED, f"control behaved (rejected by the condition): {message}"
    if verdict is Verdict.PASS:
        return Verdict.UNINFORMATIVE, ("control passed: condition uninformative (it cannot tell this "
                                       f"model-independent map from an explanation): {message}")
    return verdict, message


def _reference_words(reference: dict[str, Any]) -> str:
    value = reference.get("value")
    shown = f" = {value:.3f}" if isinstance(value, (int, float)) and math.isfinite(value) else ""
    return f"{reference.get('name', 'reference')}{shown}"


def error_result(*, suite: str, model: str, architecture: str, explainer: str | None, check_id: str,
                 category: str, condition: Condition, error: BaseException) -> CheckResult:
    """The record of a check that raised: verdict ``error`` with the exception as its message."""
    return CheckResult(suite=suite, model=model, architecture=architecture, explainer=explainer or "-",
                       check=check_id, category=category, metric="-", value=math.nan, ci_low=math.nan,
                       ci_high=math.nan, threshold=condition.threshold, direction=condition.direction,
                       gate_on=condition.gate_on, verdict=Verdict.ERROR, n=0, seed=0,
                       message=f"{type(error).__name__}: {error}",
                       details={"traceback": "".join(traceback.format_exception(error))})
