"""index.html: one self-contained page per run (or per set of runs) that people read.

The page holds a matrix of models x checks coloured by verdict; per model, every check's value,
CI, threshold and condition in words, the overlay galleries (true positives, false negatives, false
positives; class-averaged maps; shortcut-cluster prototypes), randomisation curves beside their
controls, stability and ROC curves, the shortcut scan's clusters; the statistics across models and,
where a run recorded one, its comparison with a baseline run. Images are embedded as ``data:``
URIs and the style sheet is inline: the file loads nothing from the network.

Everything is read from results.json and the images in the run folders: re-rendering never
recomputes a check (``xai-harness report RUN_DIR...``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from harness.atomic import atomic_write_text
from harness.report.comparison import compare_models, differing_pairs, parameters_vs_auroc, \
    parameters_vs_auroc_lines
from harness.report.formatting import (
    FAILING_VERDICTS,
    MISSING,
    as_record,
    describe_counts,
    explainer_label,
    format_ci,
    format_number,
    model_label,
    role_counts,
    role_of,
)
from harness.report.html_parts import LEGEND, badge, condition_words, esc, figure, image_file, style_sheet, table
from harness.report.results_file import load_run

log = logging.getLogger(__name__)

INDEX_FILENAME = "index.html"
#: The results.json key of the comparison with a baseline run, rendered when present.
BASELINE_KEY = "baseline"

RunSource = tuple[Path, Mapping[str, Any]]  # (run directory, results document)


def load_runs(run_dirs: Iterable[Path | str]) -> list[RunSource]:
    """``(run_dir, document)`` of each run directory (or results.json), read and schema-checked."""
    out = []
    for given in run_dirs:
        path = Path(given)
        run_dir = path.parent if path.is_file() else path
        out.append((run_dir, load_run(path)))
    return out


def write_html_report(runs: Sequence[RunSource], out_dir: Path | str) -> Path:
    """Render ``runs`` into ``out_dir/index.html`` atomically and return its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / INDEX_FILENAME
    atomic_write_text(path, render_html(runs))
    return path


class _Column:
    """One model of one run: a column of the matrix and a section of the page."""

    def __init__(self, run: int, run_id: str, model: str, records: list[dict[str, Any]], label: str) -> None:
        self.run, self.run_id, self.model, self.records, self.label = run, run_id, model, records, label
        self.anchor = "m-" + "".join(ch if ch.isalnum() else "-" for ch in f"{run}-{model}")


def render_html(runs: Sequence[RunSource]) -> str:
    """The whole page for one run, or several runs merged (columns are labelled with the run when ambiguous)."""
    columns = _columns(runs)
    records = [r for c in columns for r in c.records]
    parts = [_header(runs, records), _matrix(columns)]
    for i, (_, document) in enumerate(runs):
        if document.get(BASELINE_KEY):
            parts.append(render_baseline(document[BASELINE_KEY], _run_name(runs, i)))
    parts += [_model_section(runs[c.run][0], runs[c.run][1], c) for c in columns]
    parts += [_across_models(runs, columns), _skipped(runs), _meta(runs)]
    body = "\n".join(p for p in parts if p)
    title = "xai-harness report " + ", ".join(str(d.get("run_id", MISSING)) for _, d in runs)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{esc(title)}</title>\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<style>{style_sheet()}</style></head>\n<body>\n{body}\n</body></html>\n")


def _columns(runs: Sequence[RunSource]) -> list[_Column]:
    columns = []
    for i, (_, document) in enumerate(runs):
        groups: dict[str, list[dict[str, Any]]] = {}
        for record in document.get("records", []):
            groups.setdefault(str(record.get("model") or MISSING), []).append(as_record(record))
        for item in [*document.get("overlays", []), *document.get("figures", [])]:
            if item.get("model"):
                groups.setdefault(str(item["model"]), [])
        for model, model_records in groups.items():
            label = model if len(runs) == 1 else f"{model} ({document.get('run_id', i)})"
            columns.append(_Column(i, str(document.get("run_id", i)), model, model_records, label))
    return columns


def _run_name(runs: Sequence[RunSource], i: int) -> str:
    return str(runs[i][1].get("run_id", i))


def _header(runs: Sequence[RunSource], records: list[dict[str, Any]]) -> str:
    failing = sum(r["verdict"] in FAILING_VERDICTS for r in records)
    exits = [(d.get("session") or {}).get("exit_status") for _, d in runs]
    failed = failing or any(e not in (None, 0) for e in exits)
    outcome = "FAIL" if failed else "PASS" if records else "NOTHING CHECKED"
    css = "outcome-fail" if failed or not records else "outcome-pass"
    names = ", ".join(f"<code>{esc(d.get('run_id', MISSING))}</code> (created {esc(d.get('created'))})"
                      for _, d in runs)
    counts = "; ".join(f"{esc(heading)}: {esc(text)}" for heading, text in describe_counts(role_counts(records)))
    lines = [f"<h1>xai-harness report: <span class=\"{css}\">{outcome}</span></h1>",
             f"<p>{'Runs' if len(runs) > 1 else 'Run'} {names}. {failing} of {len(records)} items failing or "
             f"in error. Gates, reported-only checks and controls are counted apart, never as passes"
             f"{': ' + counts if counts else ''}.</p>"]
    for _, document in runs:
        if document.get("complete") is False:
            reason = (document.get("session") or {}).get("reason") or "the run did not finish"
            lines.append(f'<p class="banner">INCOMPLETE run {esc(document.get("run_id"))}: {esc(reason)}. These are '
                         "the results written so far; a missing item is not a pass.</p>")
    return "\n".join(lines)


def _matrix(columns: list[_Column]) -> str:
    """Checks (and explainers) as rows, models as columns, each cell coloured by its verdict."""
    if not any(c.records for c in columns):
        return "<h2>Verdicts</h2><p>No check results.</p>"
    keys = list(dict.fromkeys((str(r.get("check")), explainer_label(r)) for c in columns for r in c.records))
    headers = ["check", "explainer", *[c.label for c in columns]]
    rows = []
    for check, explainer in keys:
        cells = [f"<code>{esc(check)}</code>", esc(explainer)]
        for column in columns:
            found = [r for r in column.records if str(r.get("check")) == check and explainer_label(r) == explainer]
            cells.append(_matrix_cell(found[0]) if found else '<td class="empty">-</td>')
        rows.append(cells)
    html = table(headers, rows, css="matrix")
    legend = " ".join(f"<span>{badge(v, v.upper())} {esc(words)}</span>" for v, words in LEGEND)
    return f'<h2>Verdicts</h2>\n<p class="legend">{legend}</p>\n{html}'


def _matrix_cell(record: Mapping[str, Any]) -> str:
    """``<td class="cell v-<verdict> role-<role>">VERDICT value</td>``; the sentence of the condition on hover."""
    verdict = str(record.get("verdict"))
    value = "" if record.get("value") is None else " " + format_number(record.get("value"))
    return (f'<td class="cell v-{esc(verdict)} role-{esc(role_of(record))}" data-verdict="{esc(verdict)}" '
            f'title="{esc(record.get("message") or "")}">{esc(verdict.upper())}{esc(value)}</td>')


def _model_section(run_dir: Path, document: Mapping[str, Any], column: _Column) -> str:
    from harness.report import html_figures

    name, architecture = model_label(column.records) if column.records else (column.model, "")
    heading = f"Model <code>{esc(name)}</code>" + (f" (architecture <code>{esc(architecture)}</code>)"
                                                    if architecture else "")
    if column.label != column.model:
        heading += f", run <code>{esc(column.run_id)}</code>"
    parts = [f'<h2 id="{column.anchor}">{heading}</h2>']
    parts.append(_checks_table(column.records) if column.records else "<p>No check results for this model.</p>")
    overlays = [o for o in document.get("overlays", []) if o.get("model") == column.model]
    parts.append(_galleries(run_dir, overlays))
    curves = [
        ("Randomisation: similarity vs layer, beside the controls", html_figures.randomisation_curves),
        ("Stability", html_figures.stability_points),
        ("ROC curve", html_figures.roc_curves),
    ]
    for title, draw in curves:
        parts.append(_drawn(title, draw, column))
    parts.append(_clusters(column.records))
    figures = [f for f in document.get("figures", []) if f.get("model") == column.model]
    if figures:
        parts.append("<h3>Figures</h3>\n<div class=\"gallery\">" + "\n".join(
            image_file(run_dir, f["path"], str(f.get("name") or f["path"])) for f in figures) + "</div>")
    return "\n".join(p for p in parts if p)


def _checks_table(records: list[dict[str, Any]]) -> str:
    headers = ("check", "explainer", "role", "metric", "value", "95% CI", "n (patients)", "reference",
               "threshold", "condition", "verdict", "what was measured")
    rows = []
    for r in records:
        n, patients = r.get("n") or 0, r.get("n_patients") or 0
        count = MISSING if not n else f"{n} ({patients})" if patients and patients != n else str(n)
        rows.append([f"<code>{esc(r.get('check'))}</code>", esc(explainer_label(r)), esc(role_of(r)),
                     esc(r.get("metric")), esc(format_number(r.get("value"))), esc(format_ci(r)), esc(count),
                     esc(_reference(r)), esc(format_number(r.get("threshold"))), esc(condition_words(r)),
                     badge(r["verdict"]), esc(r.get("message") or "")])
    return "<h3>Checks</h3>\n" + table(headers, rows, css="checks", numeric=(4, 6, 8))


def _reference(record: Mapping[str, Any]) -> str:
    ref = record.get("reference") or {}
    if ref.get("name"):
        return ref["name"] + ("" if ref.get("value") is None else f" = {format_number(ref['value'])}")
    return str(ref.get("kind") or MISSING)


#: Overlay galleries: (heading, does this overlay's explainer label belong to it).
GALLERIES = (
    ("Cases: true positives, false negatives and false positives (contour: lesion mask)",
     lambda e: "-class-average" not in e and "-spray" not in e),
    ("Class-averaged maps over the positives", lambda e: e.endswith("-class-average")),
    ("Shortcut scan: prototypes of each SpRAy cluster", lambda e: "-spray" in e),
)


def _galleries(run_dir: Path, overlays: list[Mapping[str, Any]]) -> str:
    parts = []
    for heading, belongs in GALLERIES:
        mine = [o for o in overlays if belongs(str(o.get("explainer") or ""))]
        if mine:
            images = "\n".join(image_file(run_dir, o["path"], str(o.get("title") or o["path"])) for o in mine)
            parts.append(f"<h3>{esc(heading)}</h3>\n<div class=\"gallery\">{images}</div>")
    return "\n".join(parts)


def _drawn(title: str, draw: Any, column: _Column) -> str:
    """A figure drawn from the records; a drawing failure is a note on the page, never a lost report."""
    try:
        drawn = draw(column.model, column.records)
    except Exception as err:  # noqa: BLE001
        log.warning("could not draw %s for %s", title, column.model, exc_info=True)
        return f'<p class="note">{esc(title)}: could not be drawn ({esc(type(err).__name__)}: {esc(err)})</p>'
    return "" if drawn is None else f"<h3>{esc(title)}</h3>\n" + figure(*drawn)


def _clusters(records: list[dict[str, Any]]) -> str:
    """The shortcut scan's clusters (``details.clusters``) as a table; prototypes are in the gallery."""
    parts = []
    for r in records:
        clusters = (r.get("details") or {}).get("clusters")
        if not clusters:
            continue
        rows = [[esc(c.get("cluster")), esc(c.get("size")), esc(format_number(c.get("outside_lungs_density"))),
                 esc(", ".join(f"{k} {format_number(v)}" for k, v in (c.get("artifact_shares") or {}).items()) or "-"),
                 badge("fail", "FLAGGED") if c.get("flagged") else "anatomy",
                 esc(", ".join(str(p) for p in c.get("prototypes") or []))] for c in clusters]
        parts.append(f"<h3>Shortcut scan: clusters of <code>{esc(r.get('check'))}</code> with "
                     f"{esc(explainer_label(r))}</h3>\n" + table(
                         ("cluster", "images", "outside-lung density (x uniform)", "artifact shares", "flag",
                          "prototype images"), rows, numeric=(1, 2)))
    return "\n".join(parts)


def _across_models(runs: Sequence[RunSource], columns: list[_Column]) -> str:
    """Cross-model statistics: as the run stored them, or recomputed from the records for several runs merged
    and for a run stored before the tables were made per suite (``xai-harness report`` re-renders it right)."""
    stored = runs[0][1] if len(runs) == 1 else {}
    if isinstance(stored.get("parameters_vs_auroc"), list):  # per suite: this version's tables, computed at finish
        comparisons, sizes = list(stored.get("comparisons") or []), stored["parameters_vs_auroc"]
    else:
        merged = [{**r, "model": c.label} for c in columns for r in c.records]
        try:
            comparisons, sizes = compare_models(merged), parameters_vs_auroc(merged)
        except Exception:  # noqa: BLE001
            log.warning("could not compare the models of the report", exc_info=True)
            comparisons, sizes = list(stored.get("comparisons") or []), stored.get("parameters_vs_auroc")
    paragraphs = "".join(f"\n<p>{esc(line)}</p>" for line in parameters_vs_auroc_lines(sizes))
    if not comparisons:
        return f"<h2>Across models</h2>{paragraphs}" if paragraphs else ""
    rows = []
    for c in comparisons:
        a = c["anova"]
        means = ", ".join(f"{g} {m:.3f}" for g, m in zip(a["groups"], a["means"]))
        rho = c.get("spearman_vs_auroc")
        corr = f"rho {rho['rho']:.2f}, p {rho['p']:.3g} ({len(rho['models'])} models)" if rho else "-"
        rows.append([esc(c.get("suite") or "-"), esc(c["check"]), esc(c["explainer"]), esc(means), f"{a['f']:.2f}",
                     f"{a['p']:.3g}", esc(differing_pairs(a)), esc(corr)])
    return ("<h2>Across models</h2>\n<p>One-way ANOVA of the per-image values of each suite's models, Tukey HSD "
            "for each pair (alpha 0.05); Spearman's rho between AUROC and the localisation value across them.</p>\n"
            + table(("suite", "check", "explainer", "models (mean)", "F", "p", "pairs that differ", "vs AUROC"), rows,
                    numeric=(4, 5)) + paragraphs)


def render_baseline(baseline: Any, run_id: str) -> str:
    """The comparison with a baseline run (results.json ``baseline``), drawn generically.

    A mapping with a list of row mappings (``rows``, ``deltas`` or ``checks``) or a list of row
    mappings is a table with one column per key; anything else is shown as JSON. The baseline
    comparison's own module may replace this function with a richer view.
    """
    heading = f"<h2>Compared with a baseline run (run <code>{esc(run_id)}</code>)</h2>"
    rows = baseline
    intro = ""
    if isinstance(baseline, Mapping):
        intro = "".join(f"<p>{esc(k)}: {esc(v)}</p>" for k, v in baseline.items() if not isinstance(v, (list, dict)))
        rows = next((baseline[k] for k in ("rows", "deltas", "checks") if isinstance(baseline.get(k), list)), None)
    if isinstance(rows, list) and rows and all(isinstance(r, Mapping) for r in rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        cells = [[_baseline_verdict(r[k]) if k == "verdict" and r.get(k) in _BASELINE_BADGES
                  else esc(_cell_text(r.get(k))) for k in keys] for r in rows]
        return "\n".join([heading, intro, table(keys, cells, css="baseline")])
    return f"{heading}\n{intro}<pre>{esc(json.dumps(baseline, indent=2, default=str))}</pre>"


#: Words of the baseline comparison's verdicts -> the colour of the verdict they resemble.
_BASELINE_BADGES = {"regressed": "fail", "improved": "pass", "no significant change": "skip", "not compared": "skip"}


def _baseline_verdict(verdict: str) -> str:
    return badge(_BASELINE_BADGES[verdict], verdict.upper())


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return MISSING if value is None else str(value)


def _skipped(runs: Sequence[RunSource]) -> str:
    rows = [[esc(d.get("run_id")), f"<code>{esc(s.get('item'))}</code>", esc(s.get("reason") or "(no reason given)")]
            for _, d in runs for s in d.get("skipped") or []]
    if not rows:
        return ""
    return (f"<h2>Skipped items ({len(rows)})</h2>\n<p>A skip is not a pass: each of these was not checked, for "
            "the reason given.</p>\n" + table(("run", "item", "reason"), rows))


def _meta(runs: Sequence[RunSource]) -> str:
    parts = ["<h2>Runs</h2>"]
    for _, document in runs:
        meta = document.get("meta") or {}
        rows = [[esc(k), esc(v if isinstance(v, str) else json.dumps(v, default=str))] for k, v in meta.items()]
        session = document.get("session") or {}
        rows += [[esc(f"session.{k}"), esc(v)] for k, v in session.items()]
        parts.append(f"<details><summary>run <code>{esc(document.get('run_id'))}</code>: schema "
                     f"{esc(document.get('schema', 0))}, complete {esc(document.get('complete'))}</summary>\n"
                     + table(("key", "value"), rows) + "</details>")
    return "\n".join(parts)
