"""The detection matrix: which check caught which defect on which family, and how often gates are wrong.

From the verdicts on ``test`` (patients the thresholds never saw): per (defect, family) and suite
check, ``caught`` (a gate failed), ``missed``, ``skip`` or ``error``; per check, its sensitivity on
the defects it is meant to catch and its false-fail rate on the healthy models; per defect, whether
an intended check caught it on every family.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

CELL = {"fail": "caught", "pass": "missed", "warn": "missed", "skip": "skip", "error": "error"}


def detection_matrix(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The matrix and its rates from meta records (gates only; a check's explainers are pooled: any failing
    item catches)."""
    rows = [r for r in records if r.get("role") == "gate"]
    cells: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    intended: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rows:
        key = (r["defect"], r["family"] if r["defect"] != "healthy" else r["subject"])
        cell = CELL.get(r["verdict"], r["verdict"])
        cells[key][r["check"]] = _worse(cells[key].get(r["check"]), cell)
        if r.get("intended"):
            intended[key].add(r["check"])
    checks = sorted({r["check"] for r in rows}, key=lambda c: [r["check"] for r in rows].index(c))
    per_check = {c: {**_rates(c, cells, intended), **_margins([r for r in rows if r["check"] == c])} for c in checks}
    per_defect = _per_defect(cells, intended)
    healthy = [k for k in cells if k[0] == "healthy"]
    false_fails = sorted(f"{k[1]}: {c}" for k in healthy for c, v in cells[k].items() if v == "caught")
    return {
        "checks": checks,
        "rows": [{"defect": d, "family": f, "cells": cells[(d, f)], "intended": sorted(intended[(d, f)])}
                 for d, f in sorted(cells, key=lambda k: (k[0] != "healthy", k[0], k[1]))],
        "per_check": per_check,
        "per_defect": per_defect,
        "healthy_false_fails": false_fails,
        "targets": {
            "every_defect_caught_on_every_family": all(v["caught_on_every_family"] for v in per_defect.values()),
            "zero_false_fails_on_healthy": not false_fails,
        },
    }


def _worse(old: str | None, new: str) -> str:
    order = ("caught", "error", "missed", "skip")
    if old is None:
        return new
    return min(old, new, key=lambda v: order.index(v) if v in order else len(order))


def _rates(check: str, cells, intended) -> dict[str, Any]:
    # a skipped cell is a defect that cannot exist there (Guided Backprop on a GELU network): not meant
    meant = [k for k in cells if check in intended[k] and cells[k].get(check) != "skip"]
    caught = [k for k in meant if cells[k].get(check) == "caught"]
    healthy = [k for k in cells if k[0] == "healthy" and check in cells[k]]
    false = [k for k in healthy if cells[k][check] == "caught"]
    return {
        "intended_defects": len(meant), "caught": len(caught),
        "sensitivity": len(caught) / len(meant) if meant else None,
        "missed": sorted(f"{d}/{f}" for d, f in meant if (d, f) not in caught),
        "healthy": len(healthy), "false_fails": len(false),
        "false_fail_rate": len(false) / len(healthy) if healthy else None,
        "caught_unintended": sorted(f"{d}/{f}" for (d, f), c in cells.items()
                                    if d != "healthy" and c.get(check) == "caught" and check not in intended[(d, f)]),
    }


def _margins(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """How far the worst healthy model and the least defective intended defect lie from the threshold
    (positive: on the right side), and whether the two populations separate at all."""
    def gated(r):
        v = r.get(r.get("gate_on", "value"))
        return v if isinstance(v, (int, float)) and math.isfinite(v) else None

    first = rows[0]
    sign = 1.0 if first.get("direction") == ">=" else -1.0
    t = first.get("threshold")
    healthy = [gated(r) for r in rows if r["defect"] == "healthy" and gated(r) is not None]
    defects = [gated(r) for r in rows if r["defect"] != "healthy" and r.get("intended") and gated(r) is not None]
    worst = min((sign * v for v in healthy), default=None)
    least = max((sign * v for v in defects), default=None)
    return {
        "threshold": t, "gate": f"{first.get('gate_on')} {first.get('direction')} {t}",
        "healthy_margin": None if worst is None or t is None else round(worst - sign * t, 4),
        "defect_margin": None if least is None or t is None else round(sign * t - least, 4),
        "separates": None if worst is None or least is None else bool(worst > least),
    }


def _per_defect(cells, intended) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (defect, family), row in cells.items():
        if defect == "healthy":
            continue
        meant = intended[(defect, family)]
        by = sorted(c for c in meant if row.get(c) == "caught")
        # a defect that cannot exist on a family (Guided Backprop on a GELU network) skips every intended check
        applicable = any(row.get(c) not in (None, "skip") for c in meant)
        entry = out.setdefault(defect, {"families": {}, "caught_on_every_family": True})
        entry["families"][family] = {"caught_by_intended": by, "caught": bool(by), "applicable": applicable,
                                     "any_check": sorted(c for c, v in row.items() if v == "caught")}
        entry["caught_on_every_family"] &= bool(by) or not applicable
    return out
