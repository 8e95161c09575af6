"""Run a suite's items on one subject for one split: flat records for calibration and the detection matrix."""

from __future__ import annotations

import inspect
import logging
import time
from typing import Any

from harness.checks.registry import get_check
from harness.checks.runner import error_result, run_check
from harness.explain.context import ModelContext
from harness.meta.subjects import Subject
from harness.suites import Suite, SuiteCheck

log = logging.getLogger(__name__)
RECORD_KEYS = ("check", "metric", "category", "explainer", "value", "ci_low", "ci_high", "threshold", "direction",
               "gate_on", "verdict", "role", "n", "n_patients", "message")


def items_of(suite: Suite, subject: Subject, is_control) -> list[tuple[SuiteCheck, str | None]]:
    """The (check, explainer) items the meta run evaluates for ``subject``: the gates only (never the
    controls, which judge conditions rather than models, nor reported-only checks, which cannot fail);
    for an explainer defect only the items of the explainers it replaces."""
    items = []
    for check in suite.checks:
        if check.condition.severity != "fail":
            continue
        for explainer in check.explainers:
            name = None if explainer == "-" else explainer
            if name is not None and is_control(name):
                continue
            if subject.explainers is not None and name not in subject.explainers:
                continue
            items.append((check, name))
    return items


def evaluate_item(ctx: ModelContext, suite: Suite, check: SuiteCheck, explainer: str | None, *, split: str,
                  profile: str) -> dict[str, Any] | None:
    """One item on ``split`` (the check's own ``split`` parameter is replaced), as a flat record; None
    when the suite's overrides make it reported only (or skipped) for this model."""
    condition, params, skip = check.for_model(ctx.name, ctx.architecture, profile, ctx.family)
    if skip or condition.severity != "fail":
        return None
    spec = get_check(check.check)
    if "split" in inspect.signature(spec.fn).parameters:
        params = {**params, "split": split}
    started = time.perf_counter()
    try:
        result = run_check(ctx, suite=suite.name, check_id=check.id, check=check.check, explainer=explainer,
                           params=params, condition=condition)
    except Exception as err:  # noqa: BLE001  (an error record, as in a suite run)
        log.exception("meta: %s on %s failed", check.id, ctx.name)
        result = error_result(suite=suite.name, model=ctx.name, architecture=ctx.architecture, explainer=explainer,
                              check_id=check.id, category=spec.category, condition=condition, error=err)
    record = {k: v for k, v in result.to_dict().items() if k in RECORD_KEYS}
    record.update(registered=check.check, params={k: v for k, v in params.items() if k not in ("n_boot", "seed")},
                  severity=condition.severity, model_family=ctx.family,
                  seconds=round(time.perf_counter() - started, 3))
    return record


def subject_fields(subject: Subject, split: str) -> dict[str, Any]:
    return {"subject": subject.name, "family": subject.family.name, "architecture": subject.family.architecture,
            "defect": subject.label, "seed": subject.seed, "split": split}
