"""Report stage: results.json, summary.md, heatmap overlays, reports/latest/ and the terminal table.

Typical use (the pytest plugin does this)::

    run = start_run(Path("reports"), meta={"models": ["resnet18"]})
    run.add(check_result)            # results.json is rewritten atomically after each result
    run.add_overlay(Overlay(...))    # reports/<run-id>/overlays/<model>__<explainer>.png
    run_dir = run.finish()           # summary.md, index.html, and reports/latest/ mirrors the run
    render_terminal_table(load_results(run_dir), Console())

Nothing here imports torch or pyplot; matplotlib and rich are imported when something is drawn.
"""

from __future__ import annotations

from harness.report.export import per_image_frame, write_exports
from harness.report.html import load_runs, render_html, write_html_report
from harness.report.latest import mirror_latest
from harness.report.meta import collect_meta
from harness.report.overlays import Overlay, overlay_figure, render_overlay
from harness.report.results_file import (
    atomic_write_json,
    atomic_write_text,
    load_results,
    load_run,
    new_run_id,
)
from harness.report.run import RunWriter, start_run
from harness.report.summary import render_summary
from harness.report.terminal import render_terminal_table, total_line

__all__ = [
    "Overlay",
    "RunWriter",
    "atomic_write_json",
    "atomic_write_text",
    "collect_meta",
    "load_results",
    "load_run",
    "load_runs",
    "mirror_latest",
    "new_run_id",
    "overlay_figure",
    "per_image_frame",
    "render_html",
    "render_overlay",
    "render_summary",
    "render_terminal_table",
    "start_run",
    "total_line",
    "write_exports",
    "write_html_report",
]
