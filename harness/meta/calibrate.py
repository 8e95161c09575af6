"""Thresholds from a calibration split and population: where a gate separates healthy models from defects.

For each gated check of a suite, the gated field (``ci_low`` or ``ci_high``) of every healthy model
and of every defect the check is meant to catch, measured on the ``calib`` split (patients disjoint
from ``test``), gives a proposal:

- they separate: the midpoint between the worst healthy model and the least defective defect, with
  half the gap as the stated margin on each side;
- they overlap, or no defect is meant to trip the check: the suite's threshold is kept when every
  healthy model clears it (the defects it does not catch are named), else it moves beyond the worst
  healthy model by :data:`RELATIVE_BUFFER` of that value (at least :data:`MIN_BUFFER`), so no
  calibration model fails;
- a floor above everything: a gate of a statistic with a chance level (the registered check's
  ``chance``: what a map that knows nothing scores) never sits below it, since it would then pass a
  map pointing anywhere and the suite's own ``random`` control. Where the rule above would go lower,
  the gate sits at chance and the healthy models below it are named: their maps do not localise
  better than chance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from harness.checks.registry import get_check
from harness.suites import Suite

RELATIVE_BUFFER = 0.10  # a threshold moved beyond the worst healthy value keeps 10% of it as margin
MIN_BUFFER = 0.01


@dataclass(frozen=True)
class Proposal:
    """The proposed threshold of one suite check and the values it rests on."""

    check: str
    registered: str
    gate_on: str
    direction: str
    current: float
    proposed: float
    separates: bool
    healthy_margin: float  # worst healthy value minus the threshold, in the passing direction
    defect_margin: float | None  # threshold minus the least defective intended value, in the failing direction
    healthy: dict[str, float] = field(default_factory=dict)
    defects: dict[str, float] = field(default_factory=dict)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def propose(records: Iterable[dict[str, Any]], suite: Suite, *, decimals: int = 3) -> list[Proposal]:
    """Proposals for every gated (severity fail) check of ``suite`` from meta records on the calib split.

    ``records`` carry ``check`` (the suite id), ``defect`` (``healthy`` or a defect name),
    ``intended`` (whether the record's defect is meant to be caught by this check), ``subject``,
    ``explainer`` and the gated fields.
    """
    rows = list(records)
    out = []
    for check in suite.checks:
        if check.condition.severity != "fail":
            continue
        mine = [r for r in rows if r["check"] == check.id and r.get("role") == "gate"]
        if mine:
            out.append(_propose_one(check, mine, decimals))
    return out


def _propose_one(check, rows: list[dict[str, Any]], decimals: int) -> Proposal:
    gate_on, direction, current = check.condition.gate_on, check.condition.direction, check.condition.threshold
    sign = 1.0 if direction == ">=" else -1.0  # in "passing-positive" units
    healthy = {_key(r): r[gate_on] for r in rows if r["defect"] == "healthy" and _finite(r[gate_on])}
    defects = {_key(r): r[gate_on] for r in rows if r["defect"] != "healthy" and r.get("intended")
               and _finite(r[gate_on])}
    if not healthy:
        return Proposal(check.id, check.check, gate_on, direction, current, current, False, math.nan, None,
                        healthy, defects, "no healthy value: threshold kept")
    worst_healthy = min(sign * v for v in healthy.values())
    best_defect = max(sign * v for v in defects.values()) if defects else None
    separates = best_defect is not None and worst_healthy > best_defect
    if separates:
        t, note = (worst_healthy + best_defect) / 2, ""
    else:
        keep = worst_healthy >= sign * current
        t = sign * current if keep else worst_healthy - max(MIN_BUFFER, RELATIVE_BUFFER * abs(worst_healthy))
        note = ("threshold kept" if keep else "moved beyond the worst healthy model") + (
            "; no defect is meant to trip this check" if best_defect is None else "; does not separate, not caught: "
            + ", ".join(sorted(k for k, v in defects.items() if sign * v >= t)))
    chance = get_check(check.check).chance
    if chance is not None and direction == ">=" and t < chance:
        below = sorted(k for k, v in healthy.items() if v < chance)
        t, separates = chance, separates and not below
        note = (f"floored at chance ({chance:g}): {note.rstrip('.') + '; ' if note else ''}the rule gave a gate that "
                "passes a map at chance and the random control" + (f"; healthy below chance: {', '.join(below)}"
                                                                     if below else ""))
    threshold = round(sign * t, decimals)
    t = sign * threshold
    return Proposal(check.id, check.check, gate_on, direction, current, threshold, separates,
                    round(worst_healthy - t, 4), None if best_defect is None else round(t - best_defect, 4),
                    healthy, defects, note)


def _key(record: dict[str, Any]) -> str:
    explainer = record.get("explainer") or "-"
    return record["subject"] + ("" if explainer == "-" else f"/{explainer}")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
