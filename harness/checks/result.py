"""Check results: plain frozen records that travel to the report stage and into results.json."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

CATEGORIES = (
    "performance",
    "localisation",
    "randomisation",
    "stability",
    "checkpoint_consistency",
    "shortcut",
    "faithfulness",
    "complexity",
)


class Verdict(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    """One check of one model with one explainer: the record written to results.json.

    ``value`` is the estimate, ``ci_low``/``ci_high`` its bootstrap CI (NaN when not bootstrapped),
    ``threshold`` and ``direction`` (``>=`` or ``<=``) the condition, ``gate_on`` which of value /
    ci_low / ci_high the condition reads, ``message`` the condition as a sentence.
    """

    suite: str
    model: str
    architecture: str
    explainer: str
    check: str
    category: str
    metric: str
    value: float
    ci_low: float
    ci_high: float
    threshold: float
    direction: str
    verdict: Verdict
    n: int
    seed: int
    gate_on: str = "value"
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["verdict"] = self.verdict.value
        for key in ("value", "ci_low", "ci_high", "threshold"):
            record[key] = _json_float(record[key])
        return record


def _json_float(x: float | None) -> float | None:
    """NaN and inf are not JSON: write them as null."""
    if x is None or not math.isfinite(float(x)):
        return None
    return float(x)
