"""Conditions: a threshold on one field of a measurement, read as a sentence ("ci_low >= 0.10")."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harness.checks.result import Verdict

GATE_FIELDS = ("value", "ci_low", "ci_high")
DIRECTIONS = (">=", "<=")
_PATTERN = re.compile(r"^\s*(value|ci_low|ci_high)\s*(>=|<=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Condition:
    """``gate_on direction threshold``, e.g. ``ci_low >= 0.10``; ``severity`` is fail or warn."""

    gate_on: str
    direction: str
    threshold: float
    severity: str = "fail"

    @classmethod
    def parse(cls, text: str, *, severity: str = "fail") -> "Condition":
        """Parse ``"<value|ci_low|ci_high> <>=|<=> <number>"``; raise ValueError naming the form."""
        match = _PATTERN.match(str(text))
        if not match:
            raise ValueError(
                f"cannot read condition {text!r}: write '<field> <op> <number>' with field one of "
                f"{', '.join(GATE_FIELDS)} and op one of {', '.join(DIRECTIONS)}, e.g. 'ci_low >= 0.10'"
            )
        if severity not in ("fail", "warn"):
            raise ValueError(f"severity must be 'fail' or 'warn', not {severity!r}")
        field, op, number = match.groups()
        return cls(field, op, float(number), severity)

    def __str__(self) -> str:
        return f"{self.gate_on} {self.direction} {self.threshold:g}"

    def judge(self, value: float, ci_low: float, ci_high: float) -> Verdict:
        """PASS if the gated field meets the threshold; else FAIL (or WARN); NaN -> ERROR."""
        x = {"value": value, "ci_low": ci_low, "ci_high": ci_high}[self.gate_on]
        if x is None or not math.isfinite(x):
            return Verdict.ERROR
        ok = x >= self.threshold if self.direction == ">=" else x <= self.threshold
        if ok:
            return Verdict.PASS
        return Verdict.WARN if self.severity == "warn" else Verdict.FAIL

    def sentence(self, metric: str, value: float, ci_low: float, ci_high: float, n: int,
                 n_patients: int = 0) -> str:
        """The condition and the measurement as one readable sentence."""
        x = {"value": value, "ci_low": ci_low, "ci_high": ci_high}[self.gate_on]
        verdict = self.judge(value, ci_low, ci_high)
        holds = "holds" if verdict is Verdict.PASS else "does not hold"
        field = {"value": metric, "ci_low": f"the lower 95% CI bound of {metric}",
                 "ci_high": f"the upper 95% CI bound of {metric}"}[self.gate_on]
        words = "at least" if self.direction == ">=" else "at most"
        ci = "" if not math.isfinite(ci_low) else f" (95% CI {ci_low:.3f} to {ci_high:.3f})"
        over = f"n={n}" + (f" images of {n_patients} patients" if n_patients and n_patients != n else "")
        return (
            f"{metric} = {value:.3f}{ci} over {over}; required: {field} {words} "
            f"{self.threshold:g} [{self}]; measured {x:.3f}: the condition {holds}."
        )
