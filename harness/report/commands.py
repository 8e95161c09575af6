"""``xai-harness report RUN_DIR [RUN_DIR...]``: re-render one run, or merge several, without recomputing."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``xai-harness report``."""
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="run directories (reports/<run-id>/) or their results.json files")
    parser.add_argument("--out", metavar="DIR", help="where index.html (and the exports) go; default: the run "
                        "directory for one run, reports/merged-<first run id>/ beside the first run for several")
    parser.add_argument("--csv", action="store_true", help="also write every per-image value to per_image.csv")
    parser.add_argument("--parquet", action="store_true", help="also write per_image.parquet (needs pyarrow)")


def report_command(args: argparse.Namespace) -> int:
    """Render index.html from the runs' results.json and images; export the per-image values on request."""
    from harness.report.export import per_image_frame, write_exports
    from harness.report.html import load_runs, write_html_report

    runs = load_runs(args.runs)
    out = Path(args.out) if args.out else default_out_dir(runs)
    written = [write_html_report(runs, out)]
    if args.csv or args.parquet:
        written += write_exports(per_image_frame(runs), out, csv=args.csv, parquet=args.parquet)
    from rich.console import Console

    console = Console()
    for path in written:
        console.print(str(path), markup=False, soft_wrap=True, highlight=False)
    return 0


def default_out_dir(runs: list) -> Path:
    """The run's own folder for one run; ``merged-<run ids>`` beside the first run for several."""
    first_dir, first = runs[0]
    if len(runs) == 1:
        return Path(first_dir)
    ids = "+".join(str(document.get("run_id")) for _, document in runs)
    return Path(first_dir).parent / f"merged-{ids}"[:120]
