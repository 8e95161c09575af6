"""Write calibrated thresholds into a suite file, keeping its comments and layout (``calibrate --apply``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from harness.atomic import atomic_write_text

_ENTRY = re.compile(r"^\s*-\s*id:\s*(?P<id>[\w.\-]+)\s*(#.*)?$")
_REQUIRE = re.compile(r"^(?P<head>\s*require:\s*(?P<on>value|ci_low|ci_high)\s*(?P<dir>>=|<=)\s*)"
                      r"(?P<number>[-+0-9.eE]+)(?P<tail>.*)$")


def apply_thresholds(suite_path: str | Path, thresholds: dict[str, tuple[str, str, float]]) -> list[str]:
    """Set each check's top-level ``require`` number to its proposal; returns one line per change.

    ``thresholds`` maps a check id to ``(gate_on, direction, threshold)``. Only a check's own
    ``require:`` line (the first one after its ``- id:`` line, before its ``overrides``) is touched;
    a gated field or direction that differs from the file's is an error, never a silent rewrite.
    """
    path = Path(suite_path)
    lines = path.read_text().splitlines(keepends=True)
    current, done, changes = None, set(), []
    for i, line in enumerate(lines):
        entry = _ENTRY.match(line)
        if entry:
            current = entry["id"]
            continue
        require = _REQUIRE.match(line.rstrip("\n"))
        if not require or current not in thresholds or current in done:
            continue
        gate_on, direction, value = thresholds[current]
        if (require["on"], require["dir"]) != (gate_on, direction):
            raise ValueError(f"{path}:{i + 1}: {current} gates `{require['on']} {require['dir']}`, its calibration "
                             f"`{gate_on} {direction}`: recalibrate after changing the condition")
        new = f"{value:g}"
        if float(require["number"]) != value:
            changes.append(f"{current}: {require['on']} {direction} {require['number']} -> {new}")
        lines[i] = f"{require['head']}{new}{require['tail']}\n"
        done.add(current)
    missing = sorted(set(thresholds) - done)
    if missing:
        raise ValueError(f"{path}: no `require:` line found for {', '.join(missing)}")
    atomic_write_text(path, "".join(lines))
    return changes


def thresholds_of(proposals: Iterable) -> dict[str, tuple[str, str, float]]:
    return {p.check: (p.gate_on, p.direction, p.proposed) for p in proposals}
