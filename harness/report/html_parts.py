"""Building blocks of the HTML report: the inline style sheet, escaping, tables, embedded images, condition words.

Everything the page needs is inline (CSS, PNGs as ``data:`` URIs): the file opens offline, from an
e-mail attachment or a CI artifact, and loads nothing from the network.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.report.formatting import MISSING, format_number

#: Verdict -> (background, text) colours of the matrix cells and verdict badges.
VERDICT_COLOURS: dict[str, tuple[str, str]] = {
    "pass": ("#c8e6c9", "#1b5e20"),
    "fail": ("#ef9a9a", "#7f0000"),
    "warn": ("#fff59d", "#5d4037"),
    "skip": ("#e0e0e0", "#424242"),
    "error": ("#ce93d8", "#4a148c"),
    "behaved": ("#b2ebf2", "#006064"),
    "uninformative": ("#ffcc80", "#6d3b00"),
}

#: What a verdict is called in the legend, by the role of the item (see ``formatting.ROLE_WORDS``).
LEGEND = (
    ("pass", "pass (gate) / condition holds (reported only)"),
    ("fail", "fail (gate)"),
    ("warn", "condition does not hold (reported only, never gates)"),
    ("error", "error (no measurement)"),
    ("skip", "skip (not checked)"),
    ("behaved", "control behaved (the condition rejects noise)"),
    ("uninformative", "control passed: condition uninformative"),
)


def style_sheet() -> str:
    """The page's CSS, with one class per verdict (``v-pass``, ``v-fail``, ...)."""
    verdicts = "\n".join(f".v-{v} {{ background: {bg}; color: {fg}; }}" for v, (bg, fg) in VERDICT_COLOURS.items())
    return f"""
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5em; color: #212121;
       background: #fafafa; }}
h1 {{ font-size: 1.5em; }} h2 {{ border-bottom: 2px solid #90a4ae; padding-bottom: .2em; margin-top: 2em; }}
table {{ border-collapse: collapse; margin: .6em 0; font-size: .85em; }}
th, td {{ border: 1px solid #cfd8dc; padding: .25em .5em; text-align: left; vertical-align: top; }}
th {{ background: #eceff1; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
table.checks {{ width: 100%; }} table.checks td {{ white-space: nowrap; }}
table.checks td:nth-child(4), table.checks td:nth-child(8), table.checks td:nth-child(10),
table.checks td:nth-child(12) {{ white-space: normal; overflow-wrap: anywhere; }}
table.checks td:last-child {{ font-size: .9em; width: 30%; }}
.matrix td.cell {{ text-align: center; font-weight: 600; white-space: nowrap; }}
.matrix td.empty {{ color: #9e9e9e; text-align: center; }}
.badge {{ padding: .1em .4em; border-radius: .3em; font-weight: 600; white-space: nowrap; }}
.legend span {{ display: inline-block; margin: .15em .4em .15em 0; }}
.gallery {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; background: white; border: 1px solid #cfd8dc; padding: .4em; max-width: 100%; }}
figure img {{ max-width: 100%; height: auto; display: block; }}
figcaption {{ font-size: .8em; color: #455a64; margin-top: .3em; max-width: 60em; }}
.banner {{ background: #ffcdd2; border: 2px solid #c62828; padding: .6em; font-weight: 600; }}
.outcome-fail {{ color: #c62828; }} .outcome-pass {{ color: #2e7d32; }}
.note {{ color: #546e7a; font-size: .9em; }}
{verdicts}
"""


def esc(value: Any) -> str:
    """HTML-escaped text; ``None`` is ``n/a``."""
    return html.escape(MISSING if value is None else str(value), quote=True)


def badge(verdict: str, text: str | None = None) -> str:
    """A coloured verdict label."""
    return f'<span class="badge v-{esc(verdict)}">{esc(text or verdict.upper())}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, css: str = "", numeric: Iterable[int] = ()) -> str:
    """A table of already-escaped cells; ``numeric`` column indices are right-aligned; a cell that is a
    whole ``<td ...>...</td>`` element (its own class) is kept as it is."""
    numeric = set(numeric)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_td(c, i in numeric) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<table class="{esc(css)}"><thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>'


def _td(cell: str, numeric: bool) -> str:
    if cell.startswith("<td"):
        return cell
    return f'<td class="num">{cell}</td>' if numeric else f"<td>{cell}</td>"


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure(png: bytes, caption: str) -> str:
    """An embedded PNG with its caption."""
    return f'<figure><img src="{data_uri(png)}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def image_file(run_dir: Path, relative: str, caption: str) -> str:
    """An image of the run folder (overlay or figure) embedded, or a note saying it is missing."""
    path = Path(run_dir) / relative
    try:
        return figure(path.read_bytes(), caption)
    except OSError:
        return f'<p class="note">image missing: {esc(relative)} ({esc(caption)})</p>'


def condition_words(record: Mapping[str, Any]) -> str:
    """The condition as words: ``the lower 95% CI bound of auroc at least 0.85``; ``n/a`` without a threshold."""
    threshold, direction = record.get("threshold"), record.get("direction")
    if threshold is None or direction not in (">=", "<="):
        return MISSING
    metric = record.get("metric") or record.get("check") or "the value"
    field = {"ci_low": f"the lower 95% CI bound of {metric}", "ci_high": f"the upper 95% CI bound of {metric}"}.get(
        str(record.get("gate_on") or "value"), str(metric))
    words = "at least" if direction == ">=" else "at most"
    return f"{field} {words} {format_number(threshold)}"
