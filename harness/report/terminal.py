"""The terminal view of a run: a rich table of models by checks, and a one-line total."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Mapping

from harness.checks.result import CheckResult
from harness.report.formatting import (
    FAILING_VERDICTS,
    as_record,
    explainer_label,
    format_number,
    group_by_model,
    model_label,
    verdict_counts,
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
}


def render_terminal_table(
    records: Iterable[CheckResult | Mapping[str, Any]], console: Console, *, title: str | None = None
) -> Table:
    """Print a table with one row per model and one column per check, then the total.

    A cell shows the verdict, coloured, and the value. When a check ran with several explainers,
    the cell has one line per explainer, ``<explainer> <VERDICT> <value>``; when it ran with one,
    the explainer is named in the column header instead.

    Args:
        records: Check results, as ``CheckResult`` or their ``to_dict()`` form.
        console: Where to print.
        title: Table title; default "xai-harness results".

    Returns:
        The printed table.
    """
    from rich.table import Table

    rows = [as_record(r) for r in records]
    checks = _checks(rows)
    table = Table(title=title or "xai-harness results", show_lines=True, title_justify="left")
    table.add_column("model", no_wrap=True, style="bold")
    for check, explainers in checks.items():
        header = check if len(explainers) != 1 else f"{check}\n[dim]{next(iter(explainers))}[/dim]"
        table.add_column(header, overflow="fold")
    for model_rows in group_by_model(rows).values():
        cells = [_cell(model_rows, check, len(explainers) > 1) for check, explainers in checks.items()]
        table.add_row(_model_cell(model_rows), *cells)
    console.print(table)
    console.print(total_line(rows))
    return table


def total_line(records: Iterable[CheckResult | Mapping[str, Any]]) -> Text:
    """``FAILED 12 checks: 8 pass, 2 fail, 1 warn, 1 skip`` with each verdict in its colour."""
    from rich.text import Text

    rows = [as_record(r) for r in records]
    counts = {v: n for v, n in verdict_counts(rows).items() if n}
    failed = any(verdict in FAILING_VERDICTS for verdict in counts)
    line = Text.assemble(("FAILED" if failed else "PASSED", "bold red" if failed else "bold green"))
    line.append(f" {len(rows)} check{'s' if len(rows) != 1 else ''}")
    parts = [(f"{n} {verdict}", VERDICT_STYLES.get(verdict, "")) for verdict, n in counts.items()]
    if parts:
        line.append(": ")
    for i, (text, style) in enumerate(parts):
        line.append(", " if i else "")
        line.append(text, style=style)
    return line


def _checks(rows: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Check names in order of first appearance, each with the explainers it ran with."""
    checks: dict[str, set[str]] = {}
    for row in rows:
        checks.setdefault(str(row.get("check")), set()).add(explainer_label(row))
    for explainers in checks.values():  # "-" (no explainer) is not worth a header line
        if explainers == {"-"}:
            explainers.clear()
    return checks


def _model_cell(model_rows: list[dict[str, Any]]) -> str:
    model, architecture = model_label(model_rows)
    return f"{model}\n[dim]{architecture}[/dim]" if architecture else model


def _cell(model_rows: list[dict[str, Any]], check: str, name_explainer: bool) -> Text:
    from rich.text import Text

    matching = [r for r in model_rows if str(r.get("check")) == check]
    if not matching:
        return Text("-", style="dim")
    cell = Text()
    for i, row in enumerate(matching):
        cell.append("\n" if i else "")
        if name_explainer:
            cell.append(f"{explainer_label(row)} ", style="cyan")
        verdict = row["verdict"]
        cell.append(verdict.upper(), style=VERDICT_STYLES.get(verdict, ""))
        if row.get("value") is not None:
            cell.append(f" {format_number(row['value'])}")
    return cell
