"""What the meta run writes: the calibration file, the results file, the detection matrix as Markdown and a picture."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_text

SCHEMA = 1


def machine() -> dict[str, Any]:
    """The machine and versions, recorded beside every result."""
    import timm
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else \
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    return {"device": device, "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=False, default=_plain) + "\n")
    return path


def _plain(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


def matrix_markdown(matrix: dict[str, Any], *, title: str, intro: str = "") -> str:
    """The detection matrix, per-check rates and per-defect outcome as Markdown."""
    checks = matrix["checks"]
    lines = [f"# {title}", "", intro, ""] if intro else [f"# {title}", ""]
    lines += ["## Per check: sensitivity on its intended defects, false fails on healthy models", "",
              "Margins: the worst healthy model's and the least defective intended defect's distance from the "
              "threshold, positive on the right side; both positive means the gate separates the populations.", "",
              "| check | gate | intended (defect x family) | caught | sensitivity | healthy | false fails | "
              "margins (healthy / defect) | missed |",
              "|---|---|---:|---:|---:|---:|---:|---|---|"]
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    for c in checks:
        r = matrix["per_check"][c]
        sens = "-" if r["sensitivity"] is None else f"{r['sensitivity']:.2f}"
        lines.append(f"| `{c}` | `{r.get('gate', '')}` | {r['intended_defects']} | {r['caught']} | {sens} | "
                     f"{r['healthy']} | {r['false_fails']} | {fmt(r.get('healthy_margin'))} / "
                     f"{fmt(r.get('defect_margin'))} | {', '.join(r['missed']) or '-'} |")
    lines += ["", "## Per defect: caught by an intended check on every family?", "",
              "| defect | caught everywhere | per family (intended checks that failed) |", "|---|---|---|"]
    for defect, entry in sorted(matrix["per_defect"].items()):
        fams = "; ".join(f"{f}: {', '.join(v['caught_by_intended']) or ('MISSED' if v['applicable'] else 'n/a')}"
                         for f, v in sorted(entry["families"].items()))
        lines.append(f"| `{defect}` | {'yes' if entry['caught_on_every_family'] else '**no**'} | {fams} |")
    fails = matrix["healthy_false_fails"]
    lines += ["", "## Healthy models", "", f"False fails: {len(fails)}" + (": " + ", ".join(fails) if fails else ".")]
    lines += ["", "## Matrix (C caught, . passed, s skip, E error; blank: not evaluated)", "",
              "| defect / family | " + " | ".join(f"`{c}`" for c in checks) + " |",
              "|---|" + "---|" * len(checks)]
    symbol = {"caught": "C", "missed": ".", "skip": "s", "error": "E"}
    for row in matrix["rows"]:
        cells = [symbol.get(row["cells"].get(c, ""), "") + ("*" if c in row["intended"] else "") for c in checks]
        lines.append(f"| {row['defect']} / {row['family']} | " + " | ".join(cells) + " |")
    lines += ["", "`*` marks the checks meant to catch the row's defect."]
    return "\n".join(lines) + "\n"


def matrix_figure(matrix: dict[str, Any], path: Path, *, title: str) -> Path:
    """The matrix as a picture: rows (defect, family), columns checks; red caught, green passed, grey skip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    checks, rows = matrix["checks"], matrix["rows"]
    value = {"caught": 3, "error": 2, "missed": 1, "skip": 0}
    grid = np.array([[value.get(r["cells"].get(c, "skip"), 0) for c in checks] for r in rows], dtype=float)
    from matplotlib.colors import ListedColormap

    fig, ax = plt.subplots(figsize=(max(8, 0.32 * len(checks) + 4), max(4, 0.22 * len(rows) + 2)))
    ax.imshow(grid, cmap=ListedColormap(["#dddddd", "#9ed39e", "#d9a0e0", "#e05050"]), vmin=0, vmax=3,
              aspect="auto", interpolation="nearest")
    for i, r in enumerate(rows):
        for j, c in enumerate(checks):
            if c in r["intended"]:
                ax.text(j, i, "*", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(checks)), checks, rotation=90, fontsize=6)
    ax.set_yticks(range(len(rows)), [f"{r['defect']} / {r['family']}" for r in rows], fontsize=6)
    ax.set_title(f"{title}\nred: caught (gate failed), green: passed, violet: error, grey: skip; * intended",
                 fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
