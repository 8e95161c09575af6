"""The terminal view of a run: a rich table of models by checks, and a one-line total."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from harness.checks.result import CheckResult
from harness.report.baseline import render_baseline_table
from harness.report.formatting import (
    FAILING_VERDICTS,
    as_record,
    explainer_label,
    ROLE_WORDS,
    format_number,
    group_by_model,
    model_label,
    role_counts,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

VERDICT_STYLES = {
    "pass": "green",
    "warn": "yellow",
    "fail": "bold red",
    "error": "bold magenta",
    "skip": "dim",
    "behaved": "cyan",
    "uninformative": "bold yellow",
}


def render_terminal_table(
    records: Iterable[CheckResult | Mapping[str, Any]], console: Console, *, title: str | None = None
) -> Table:
    """Print a table with one row per check and explainer and one column per model, then the total.

    Checks are rows because a suite has many more checks than a run has models: the table stays
    readable in an 80-column terminal. A cell shows the verdict, coloured, and the value.

    Args:
        records: Check results, as ``CheckResult`` or their ``to_dict()`` form.
        console: Where to print.
        title: Table title; default "xai-harness results".

    Returns:
        The printed table.
    """
    from rich.table import Table

    rows = [as_record(r) for r in records]
    models = group_by_model(rows)
    table = Table(title=title or "xai-harness results", title_justify="left")
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("explainer", style="cyan", no_wrap=True)
    table.add_column("condition", style="dim", no_wrap=True)
    for model_rows in models.values():
        table.add_column(_model_cell(model_rows), no_wrap=True)
    for check, explainer, condition in _row_keys(rows):
        cells = [_cell(model_rows, check, explainer) for model_rows in models.values()]
        table.add_row(check, explainer, condition, *cells)
    console.print(table)
    console.print(total_line(rows))
    render_baseline_table(rows, console)  # --baseline: candidate vs baseline per check (nothing otherwise)
    return table


def total_line(records: Iterable[CheckResult | Mapping[str, Any]]) -> Text:
    """``FAILED 12 items: gates 8 pass, 2 fail; controls 1 behaved, 1 uninformative`` in colour.

    Gates, reported-only checks (severity warn) and controls are counted apart: a control or a
    reported check is never a pass.
    """
    from rich.text import Text

    rows = [as_record(r) for r in records]
    failed = any(r["verdict"] in FAILING_VERDICTS for r in rows)
    line = Text.assemble(("FAILED" if failed else "PASSED", "bold red" if failed else "bold green"))
    line.append(f" {len(rows)} item{'s' if len(rows) != 1 else ''}")
    headings = {"gate": "gates", "reported": "reported only", "control": "controls"}
    groups = [(role, verdicts) for role, verdicts in role_counts(rows).items() if verdicts]
    for g, (role, verdicts) in enumerate(groups):
        line.append(": " if g == 0 else "; ")
        line.append(f"{headings[role]} ")
        words = ROLE_WORDS[role]
        ordered = sorted(verdicts.items(), key=lambda kv: list(words).index(kv[0]) if kv[0] in words else 99)
        for i, (verdict, n) in enumerate(ordered):
            line.append(", " if i else "")
            line.append(f"{n} {words.get(verdict, verdict)}", style=VERDICT_STYLES.get(verdict, ""))
    return line


def _row_keys(rows: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(check, explainer, condition) in order of first appearance."""
    keys: dict[tuple[str, str], str] = {}
    for row in rows:
        key = (str(row.get("check")), explainer_label(row))
        if key not in keys:
            threshold = row.get("threshold")
            keys[key] = (f"{row.get('gate_on', 'value')} {row.get('direction', '')} {float(threshold):g}"
                         if threshold is not None else "")
    return [(check, explainer, condition) for (check, explainer), condition in keys.items()]


def _model_cell(model_rows: list[dict[str, Any]]) -> str:
    model, architecture = model_label(model_rows)
    return f"{model}\n[dim]{architecture}[/dim]" if architecture and architecture != model else model


def _cell(model_rows: list[dict[str, Any]], check: str, explainer: str) -> Text:
    from rich.text import Text

    matching = [r for r in model_rows if str(r.get("check")) == check and explainer_label(r) == explainer]
    if not matching:
        return Text("-", style="dim")
    row = matching[0]
    verdict = row["verdict"]
    cell = Text(verdict.upper(), style=VERDICT_STYLES.get(verdict, ""))
    if row.get("value") is not None:
        cell.append(f" {format_number(row['value'])}")
    return cell
