"""summary.md: the run as Markdown, one section and table per model, failures and overlays."""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping

from harness.report.baseline import render_baseline_markdown
from harness.report.comparison import render_comparisons, render_parameters_vs_auroc
from harness.report.formatting import (
    FAILING_VERDICTS,
    MISSING,
    ROLE_WORDS,
    as_record,
    describe_counts,
    explainer_label,
    format_ci,
    format_condition,
    format_number,
    group_by_model,
    model_label,
    role_counts,
    role_of,
)

_ATTENTION = ("fail", "error", "warn", "uninformative")  # listed under the table, in this order
TABLE_COLUMNS = ("Check", "Category", "Explainer", "Metric", "Value", "95% CI", "n (patients)", "Reference",
                 "Condition", "Verdict")


def render_summary(document: Mapping[str, Any]) -> str:
    """Render a results document (as written to results.json) as Markdown.

    Args:
        document: ``run_id``, ``created``, ``meta``, ``records`` (dicts from
            ``CheckResult.to_dict``), optionally ``complete``, ``overlays`` (dicts with
            ``model``, ``explainer``, ``path`` relative to the run directory, ``title``) and
            ``figures`` (dicts with ``name``, ``path`` and an optional ``model``).

    Returns:
        The Markdown text; image links are relative to the run directory.
    """
    records = [as_record(r) for r in document.get("records", [])]
    overlays = list(document.get("overlays", []))
    figures = list(document.get("figures", []))
    groups = group_by_model(records)
    for item in [*overlays, *figures]:
        if item.get("model") and item["model"] not in groups:
            groups[item["model"]] = []
    skipped = _skipped_section(document, records)  # what was not checked comes first, under the result line
    parts = [
        _header(document, records),
        *([skipped] if skipped else []),
        _meta_section(document.get("meta", {})),
        _counts_section(records),
    ]
    for model, model_records in groups.items():
        parts.append(_model_section(model, model_records, overlays, figures))
    across = render_comparisons(document.get("comparisons") or [])
    if across:
        parts.append(across)
    size = render_parameters_vs_auroc(document.get("parameters_vs_auroc"))
    if size:
        parts.append(("" if across else "## Across models\n\n") + size)
    against = render_baseline_markdown(document)  # --baseline: candidate vs baseline per check
    if against:
        parts.append(against)
    unassigned = [f for f in figures if not f.get("model")]
    if unassigned:
        parts.append("## Figures\n\n" + _images(unassigned, "name"))
    return "\n\n".join(part.rstrip() for part in parts) + "\n"


def _header(document: Mapping[str, Any], records: list[dict[str, Any]]) -> str:
    failing = sum(r["verdict"] in FAILING_VERDICTS for r in records)
    gates = sum(role_of(r) == "gate" for r in records)
    session = document.get("session") or {}
    exit_status = session.get("exit_status")
    outcome = "**FAIL**" if failing or (exit_status not in (None, 0)) else "PASS" if records else "**NOTHING CHECKED**"
    lines = [
        f"# xai-harness report `{document.get('run_id', MISSING)}`",
        "",
        f"Created {document.get('created', MISSING)}. "
        f"Result: {outcome}, {failing} of {len(records)} items failing or in error ({gates} gates; "
        "reported-only checks and controls are counted apart, never as passes)."
        + (f" pytest exit status {exit_status}." if exit_status not in (None, 0) else ""),
    ]
    if document.get("complete") is False:
        lines += ["", _incomplete_banner(session)]
    return "\n".join(lines)


def _incomplete_banner(session: Mapping[str, Any]) -> str:
    """``**INCOMPLETE**: ...``: why the run did not run every item, how many ran, latest/ untouched."""
    reason = session.get("reason") or "the run did not finish"
    ran, collected = session.get("items_run"), session.get("items_collected")
    counted = f"; {ran} of {collected} collected items ran" if ran is not None and collected is not None else ""
    return (f"**INCOMPLETE**: {_escape(str(reason), table=False)}{counted}. These are the results written so far; "
            "a missing item is not a pass, and `reports/latest` was not updated.")


def _skipped_section(document: Mapping[str, Any], records: list[dict[str, Any]]) -> str:
    """Every skipped item with its reason (pytest's items, or the skip records of older documents)."""
    entries = [(str(s.get("item") or MISSING), str(s.get("reason") or "(no reason given)"))
               for s in document.get("skipped") or []]
    if "skipped" not in document:
        entries = [(f"{r.get('check', MISSING)} [{r.get('model', MISSING)} / {explainer_label(r)}]",
                    str(r.get("message") or "(no reason given)")) for r in records if r["verdict"] == "skip"]
    if not entries:
        return ""
    lines = [f"## Skipped items ({len(entries)}): not checked", "",
             "A skip is not a pass: each of these was not checked, for the reason given (`pytest --strict` "
             "makes them failures).", ""]
    lines += [f"- `{_escape(item, table=False)}`: {_escape(reason, table=False)}" for item, reason in entries]
    return "\n".join(lines)


def _meta_section(meta: Mapping[str, Any]) -> str:
    lines = ["## Run", ""]
    for key, value in meta.items():
        lines.append(f"- **{_escape(str(key))}**: {_escape(_meta_value(value))}")
    if not meta:
        lines.append("- (no metadata)")
    return "\n".join(lines)


def _meta_value(value: Any) -> str:
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "`" + " ".join(value) + "`"
    if isinstance(value, (dict, list, tuple)):
        return "`" + json.dumps(value, default=str) + "`"
    return MISSING if value is None else str(value)


def _counts_section(records: list[dict[str, Any]]) -> str:
    counts = role_counts(records)
    lines = ["## Verdicts", "", "| Items | Verdict | Count |", "|---|---|---:|"]
    headings = {"gate": "gates", "reported": "reported only (severity warn)", "control": "controls"}
    for role, verdicts in counts.items():
        for verdict, words in ROLE_WORDS[role].items():
            if verdicts.get(verdict):
                label = _marker(verdict, None if role == "gate" else words)
                lines.append(f"| {headings[role]} | {label} | {verdicts[verdict]} |")
    lines.append(f"| total | | {len(records)} |")
    summary = "; ".join(f"{heading}: {text}" for heading, text in describe_counts(counts))
    return "\n".join(lines) + ("\n\n" + summary + "." if summary else "")


def _model_section(
    model: str,
    records: list[dict[str, Any]],
    overlays: list[Mapping[str, Any]],
    figures: list[Mapping[str, Any]],
) -> str:
    name, architecture = model_label(records) if records else (model, "")
    heading = f"## Model `{name}`" + (f" (architecture `{architecture}`)" if architecture else "")
    parts = [heading]
    if records:
        parts.append(_table(records))
        parts.append(_failures(records))
    else:
        parts.append("No check results for this model.")
    model_overlays = [o for o in overlays if o.get("model") == model]
    if model_overlays:
        parts.append("### Overlays\n\n" + _images(model_overlays, "title"))
    model_figures = [f for f in figures if f.get("model") == model]
    if model_figures:
        parts.append("### Figures\n\n" + _images(model_figures, "name"))
    return "\n\n".join(parts)


def _table(records: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for r in records:
        cells = (
            f"`{r.get('check', MISSING)}`",
            r.get("category") or MISSING,
            explainer_label(r),
            r.get("metric") or MISSING,
            format_number(r.get("value")),
            format_ci(r),
            _count(r),
            _reference(r),
            format_condition(r),
            _marker(r["verdict"]),
        )
        lines.append("| " + " | ".join(_escape(str(c)) for c in cells) + " |")
    return "\n".join(lines)


def _count(record: dict[str, Any]) -> str:
    n, patients = record.get("n") or 0, record.get("n_patients") or 0
    if not n:
        return MISSING
    return f"{n} ({patients})" if patients and patients != n else str(n)


def _reference(record: dict[str, Any]) -> str:
    """What the value is relative to: ``uniform map = 1.000``, ``random pixel order = 0.412``, or ``absolute``."""
    ref = record.get("reference") or {}
    if ref.get("name"):
        value = ref.get("value")
        return ref["name"] + ("" if value is None else f" = {format_number(value)}")
    return str(ref.get("kind") or MISSING)


def _failures(records: list[dict[str, Any]]) -> str:
    bad = [r for r in records if r["verdict"] in _ATTENTION]
    if not bad:
        return "No failing checks."
    bad.sort(key=lambda r: _ATTENTION.index(r["verdict"]))
    lines = ["### Failing checks and warnings", ""]
    for r in bad:
        message = r.get("message") or "(no message)"
        lines.append(
            f"- {_marker(r['verdict'])} `{r.get('check', MISSING)}` with {explainer_label(r)}: "
            f"{_escape(message, table=False)}"
        )
    return "\n".join(lines)


def _images(items: Iterable[Mapping[str, Any]], caption_key: str) -> str:
    lines = []
    for item in items:
        caption = _escape(str(item.get(caption_key) or item.get("path")), table=False)
        lines.append(f"![{caption.replace(']', ')')}]({item['path']})")
    return "\n\n".join(lines)


def _marker(verdict: str, text: str | None = None) -> str:
    """PASS, SKIP and BEHAVED plain; what needs attention in bold: **FAIL**, **ERROR**, **WARN**, **UNINFORMATIVE**."""
    text = text or verdict.upper()
    return text if verdict in ("pass", "skip", "behaved") else f"**{text}**"


def _escape(text: str, *, table: bool = True) -> str:
    """Keep one-line Markdown intact: no newlines, and escaped pipes inside table cells."""
    text = " ".join(text.split())
    return text.replace("|", "\\|") if table else text
