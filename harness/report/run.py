"""A report run: collects check results, overlays and figures into reports/<run-id>/."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Mapping

from harness.checks.result import CheckResult
from harness.report.formatting import as_record
from harness.report.latest import LATEST_DIRNAME, mirror_latest
from harness.report.meta import collect_meta
from harness.report.overlays import Overlay, render_overlay
from harness.report.results_file import (
    FIGURE_DIRNAME,
    OVERLAY_DIRNAME,
    RESULTS_FILENAME,
    SCHEMA_VERSION,
    SUMMARY_FILENAME,
    atomic_write_json,
    atomic_write_text,
    new_run_id,
    utc_now_iso,
)
from harness.report.comparison import compare_models, parameters_vs_auroc
from harness.report.baseline import BASELINE_KEY, baseline_entries
from harness.report.html import write_html_report
from harness.report.summary import render_summary

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def start_run(
    report_dir: Path | str, *, run_id: str | None = None, meta: Mapping[str, Any] | None = None
) -> RunWriter:
    """Create ``report_dir/<run_id>/`` and an empty results.json, and return its writer.

    Args:
        report_dir: The reports directory (created if missing), e.g. ``reports/``.
        run_id: Directory name of the run; default :func:`new_run_id` (UTC time, pid, a per-process counter).
        meta: Run metadata (models, suite, seed, ...); it is merged over :func:`collect_meta`
            (versions, device, command line), so given keys win.

    Returns:
        The writer; call :meth:`RunWriter.finish` (or use it as a context manager).

    Raises:
        ValueError: ``run_id`` is not a plain directory name or is ``latest``.
        FileExistsError: A run with this id already exists.
    """
    run_id = run_id if run_id is not None else new_run_id()
    if not _RUN_ID.fullmatch(run_id) or run_id == LATEST_DIRNAME:
        raise ValueError(f"run_id must be a plain directory name other than 'latest', got {run_id!r}")
    run_dir = Path(report_dir) / run_id
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    # xdist workers may already have drawn overlays into the folder; a results file means a clash
    run_dir.mkdir(exist_ok=True)
    if (run_dir / RESULTS_FILENAME).exists():
        raise FileExistsError(f"a report run {run_id!r} already exists in {report_dir}")
    return RunWriter(run_dir, run_id=run_id, meta={**collect_meta(), **(meta or {})})


class RunWriter:
    """Writes one run; every change is on disk at once, so a crash leaves a valid results.json.

    Thread-safe. Create it with :func:`start_run`.
    """

    def __init__(self, run_dir: Path, *, run_id: str, meta: Mapping[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.run_id = run_id
        self._lock = threading.Lock()
        self._finished = False
        self._document: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "run_id": run_id,
            "created": utc_now_iso(),
            "complete": False,
            "meta": dict(meta),
            "records": [],
            "overlays": [],
            "figures": [],
            "skipped": [],
        }
        self._write_results()

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records added so far, as written to results.json (a copy)."""
        return [dict(record) for record in self._document["records"]]

    @property
    def results_path(self) -> Path:
        """``<run_dir>/results.json``."""
        return self.run_dir / RESULTS_FILENAME

    def add(self, result: CheckResult | Mapping[str, Any]) -> None:
        """Record one check result and rewrite results.json atomically.

        Args:
            result: A ``CheckResult``, or its ``to_dict()`` form (e.g. sent back by an xdist worker).
        """
        with self._lock:
            self._check_open()
            self._document["records"].append(as_record(result))
            self._write_results()

    def add_skip(self, item: str, reason: str, *, model: str | None = None) -> None:
        """Record a skipped item (a check, a suite that does not apply to a model, a Python check) and
        why, so the summary lists every skip instead of hiding it in a count.

        Args:
            item: The pytest node id (or any name of the item).
            reason: Why it was skipped.
            model: The model it was skipped for, where known.
        """
        with self._lock:
            self._check_open()
            self._document["skipped"].append({"item": item, "reason": reason, "model": model})
            self._write_results()

    def add_overlay(self, overlay: Overlay, *, name: str | None = None, **style: Any) -> Path:
        """Render ``overlay`` to ``overlays/<name>.png`` and link it from the model's section.

        Args:
            overlay: The cases to draw.
            name: File stem; default ``<model>__<explainer>``; a numeric suffix avoids clashes.
            **style: Passed to :func:`~harness.report.overlays.render_overlay` (``cmap``, ...).

        Returns:
            The path of the PNG.
        """
        entry = {"model": overlay.model, "explainer": overlay.explainer, "title": overlay.title}
        stem = name or f"{overlay.model}__{overlay.explainer}"
        return self._add_image(
            OVERLAY_DIRNAME, stem, entry, lambda path: render_overlay(overlay, path, **style)
        )

    def link_overlay(self, path: Path | str, *, model: str, explainer: str, title: str = "") -> None:
        """List an overlay PNG that another process (an xdist worker) rendered into this run's folder."""
        path = Path(path)
        with self._lock:
            self._check_open()
            rel = path.relative_to(self.run_dir) if path.is_absolute() else path
            entry = {"model": model, "explainer": explainer, "title": title, "path": rel.as_posix()}
            self._document[OVERLAY_DIRNAME].append(entry)
            self._write_results()

    def add_figure(self, name: str, figure: Figure, *, model: str | None = None, dpi: int = 100) -> Path:
        """Save a matplotlib figure (e.g. a curve) to ``figures/<name>.png`` and link it.

        Args:
            name: Figure name, used as caption and file stem.
            figure: Any matplotlib figure; saved with the Agg renderer, not shown or closed.
            model: Link it from this model's section; default the run's "Figures" section.
            dpi: Resolution of the PNG.

        Returns:
            The path of the PNG.
        """
        entry = {"name": name, "model": model}
        return self._add_image(
            FIGURE_DIRNAME, name, entry, lambda path: figure.savefig(path, format="png", dpi=dpi)
        )

    def finish(self, *, complete: bool = True, update_latest: bool | None = None,
               session: Mapping[str, Any] | None = None) -> Path:
        """Write the final results.json and summary.md, and mirror the run to ``latest/``.

        Calling it again does nothing; adding after it raises.

        Args:
            complete: The run ran every item it collected; ``False`` writes ``"complete": false`` and the
                INCOMPLETE banner (interrupted, stopped by ``-x``, internal error).
            update_latest: Replace ``<report_dir>/latest/`` by a copy of this run; default: only when
                ``complete`` (an incomplete run never replaces the last complete one).
            session: How the session ended, written under ``"session"``: ``exit_status``,
                ``items_collected``, ``items_run``, ``reason`` (why it is incomplete).

        Returns:
            The run directory.
        """
        update_latest = complete if update_latest is None else update_latest
        with self._lock:
            if self._finished:
                return self.run_dir
            self._document["complete"] = complete
            if session is not None:
                self._document["session"] = dict(session)
            self._document["comparisons"] = _comparisons(self._document["records"])
            self._document["parameters_vs_auroc"] = _parameters_vs_auroc(self._document["records"])
            baseline = baseline_entries(self._document["records"])  # --baseline: one entry per compared record
            if baseline:
                self._document[BASELINE_KEY] = baseline
            self._write_results()
            atomic_write_text(self.run_dir / SUMMARY_FILENAME, render_summary(self._document))
            _write_html(self.run_dir, self._document)
            self._finished = True
        if update_latest:
            mirror_latest(self.run_dir, self.run_dir.parent / LATEST_DIRNAME)
        return self.run_dir

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.finish()
            return
        try:  # never hide the original error behind a reporting error
            self.finish(complete=False)
        except Exception:
            log.exception("could not finish report run %s", self.run_id)

    def _add_image(
        self, dirname: str, stem: str, entry: dict[str, Any], save: Callable[[Path], Any]
    ) -> Path:
        """Save an image under ``dirname/`` and list it in the document key of the same name."""
        with self._lock:
            self._check_open()
            folder = self.run_dir / dirname
            folder.mkdir(exist_ok=True)
            path = _unique_path(folder, _slug(stem), ".png")
            save(path)
            self._document[dirname].append({**entry, "path": f"{dirname}/{path.name}"})
            self._write_results()
        return path

    def _check_open(self) -> None:
        if self._finished:
            raise RuntimeError(f"report run {self.run_id} is finished")

    def _write_results(self) -> None:
        atomic_write_json(self.results_path, self._document)


def _parameters_vs_auroc(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    try:
        return parameters_vs_auroc(records)
    except Exception:  # noqa: BLE001
        log.exception("could not correlate parameter counts with AUROC")
        return None


def _comparisons(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cross-model statistics; a failure here is logged, never allowed to lose the report."""
    try:
        return compare_models(records)
    except Exception:  # noqa: BLE001
        log.exception("could not compute the cross-model comparisons")
        return []


def _write_html(run_dir: Path, document: dict[str, Any]) -> None:
    """index.html beside summary.md; a failure here is logged, never allowed to lose the report."""
    try:
        write_html_report([(run_dir, document)], run_dir)
    except Exception:  # noqa: BLE001
        log.exception("could not write the HTML report of %s", run_dir)


def _slug(text: str) -> str:
    """A safe file stem: letters, digits, ``.``, ``_`` and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "image"


def _unique_path(folder: Path, stem: str, suffix: str) -> Path:
    path, n = folder / f"{stem}{suffix}", 2
    while path.exists():
        path, n = folder / f"{stem}-{n}{suffix}", n + 1
    return path
