"""Shared text formatting of check records for the Markdown summary and the terminal table."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping

from harness.checks.result import CheckResult, Verdict

#: Verdicts from best to worst, and the order counts are shown in.
VERDICT_ORDER: tuple[str, ...] = tuple(v.value for v in Verdict)
#: Verdicts that make a run fail.
FAILING_VERDICTS: frozenset[str] = frozenset({Verdict.FAIL.value, Verdict.ERROR.value})

MISSING = "n/a"


def as_record(result: CheckResult | Mapping[str, Any]) -> dict[str, Any]:
    """A ``CheckResult`` or a dict read from results.json, as a plain dict with a string verdict."""
    if isinstance(result, CheckResult):
        return result.to_dict()
    record = dict(result)
    verdict = record.get("verdict", "")
    record["verdict"] = verdict.value if isinstance(verdict, Verdict) else str(verdict).lower()
    return record


def format_number(x: Any) -> str:
    """Format a metric value readably: ``0.10``, ``0.853``, ``12.50``, ``1.2e-05``; None -> n/a.

    Two to three decimals for ordinary magnitudes, scientific notation for tiny or huge ones.
    """
    if x is None or isinstance(x, bool):
        return MISSING if x is None else str(x)
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(x):
        return MISSING if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if x != 0 and not 1e-3 <= abs(x) < 1e5:
        return f"{x:.2e}"
    text = f"{x:.3f}"
    return text[:-1] if text.endswith("0") else text


def format_ci(record: Mapping[str, Any]) -> str:
    """The 95% CI as ``[low, high]``, or ``n/a`` when the check was not bootstrapped."""
    low, high = record.get("ci_low"), record.get("ci_high")
    if _missing(low) and _missing(high):
        return MISSING
    return f"[{format_number(low)}, {format_number(high)}]"


def format_condition(record: Mapping[str, Any]) -> str:
    """The pass condition, e.g. ``>= 0.10 on ci_low``; ``n/a`` when there is no threshold."""
    threshold = record.get("threshold")
    if _missing(threshold) or not record.get("direction"):
        return MISSING
    gate_on = record.get("gate_on") or "value"
    return f"{record['direction']} {format_number(threshold)} on {gate_on}"


def verdict_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Counts per verdict in :data:`VERDICT_ORDER`, zeros included, unknown verdicts appended."""
    counts = Counter(str(record.get("verdict", "")) for record in records)
    ordered = {verdict: counts.pop(verdict, 0) for verdict in VERDICT_ORDER}
    ordered.update(sorted(counts.items()))
    return ordered


#: How the counts of each role are shown: verdict -> words.
ROLE_WORDS: dict[str, dict[str, str]] = {
    "gate": {"pass": "pass", "fail": "fail", "error": "error", "skip": "skip"},
    "reported": {"pass": "condition holds", "warn": "condition does not hold", "error": "error",
                 "skip": "skip"},
    "control": {"behaved": "control behaved", "uninformative": "control passed: condition uninformative",
                "error": "error", "skip": "skip"},
}


def role_of(record: Mapping[str, Any]) -> str:
    """``gate``, ``reported`` (severity warn: never closes the gate) or ``control``.

    Records written before roles existed count as gates; a warn verdict is always reported only (a
    gate passes or fails).
    """
    role = record.get("role")
    if record.get("verdict") == "warn" and role != "control":
        return "reported"
    return str(role) if role in ROLE_WORDS else "gate"


def role_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per role and verdict: gates, reported-only checks and controls are never added up."""
    out: dict[str, dict[str, int]] = {role: {} for role in ROLE_WORDS}
    for record in records:
        role, verdict = role_of(record), str(record.get("verdict", ""))
        out[role][verdict] = out[role].get(verdict, 0) + 1
    return out


def describe_counts(counts: Mapping[str, Mapping[str, int]]) -> list[tuple[str, str]]:
    """``(role heading, "12 pass, 1 fail")`` for each role that has records."""
    headings = {"gate": "gates", "reported": "reported only (severity warn)", "control": "controls"}
    lines = []
    for role, verdicts in counts.items():
        if verdicts:
            words = ROLE_WORDS[role]
            parts = [f"{n} {words.get(v, v)}" for v, n in sorted(verdicts.items(), key=lambda kv: _order(role, kv[0]))]
            lines.append((headings[role], ", ".join(parts)))
    return lines


def _order(role: str, verdict: str) -> int:
    order = list(ROLE_WORDS[role])
    return order.index(verdict) if verdict in order else len(order)


def group_by_model(records: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by model name, in the order models first appear."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(str(record.get("model") or MISSING), []).append(dict(record))
    return groups


def model_label(records: list[Mapping[str, Any]]) -> tuple[str, str]:
    """``(model, architecture)`` of a model's records; architecture is '' when it adds nothing."""
    model = str(records[0].get("model") or MISSING)
    architecture = str(records[0].get("architecture") or "")
    return model, ("" if architecture == model else architecture)


def explainer_label(record: Mapping[str, Any]) -> str:
    """The explainer name, or ``-`` for checks that use none (e.g. performance)."""
    return str(record.get("explainer") or "-")


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))
