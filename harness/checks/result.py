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
    """pass / warn / fail / error / skip for checks; behaved / uninformative for controls.

    A control (a model-independent map run beside the real explainers) is never a pass: it
    *behaved* when the condition rejected it, and it shows the condition is *uninformative* when
    the condition accepted it (the condition cannot tell noise from an explanation).
    """

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"
    SKIP = "skip"
    BEHAVED = "behaved"
    UNINFORMATIVE = "uninformative"


#: What a record is: a gate (its fail closes the release), reported only (severity warn), a control.
ROLES = ("gate", "reported", "control")


@dataclass(frozen=True)
class CheckResult:
    """One check of one model with one explainer: the record written to results.json.

    ``value`` is the estimate, ``ci_low``/``ci_high`` its bootstrap CI (NaN when not bootstrapped),
    ``threshold`` and ``direction`` (``>=`` or ``<=``) the condition, ``gate_on`` which of value /
    ci_low / ci_high the condition reads, ``message`` the condition as a sentence. ``n`` counts
    images and ``n_patients`` the patients the bootstrap resampled. ``role`` is one of
    :data:`ROLES`; ``reference`` says what the value is relative to (``kind``: ``absolute`` or the
    reference's name, and its ``value`` where it was measured in the same run).
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
    n_patients: int = 0
    role: str = "gate"
    reference: dict[str, Any] = field(default_factory=dict)

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
