"""The ResultRecorder: records from every item (under xdist they arrive from the workers) into the
run's report as they come; skips listed with their reasons; the report finished at session end
(``complete: false`` unless every collected item ran) and the verdict table printed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.plugin.items import skip_reason
from harness.plugin.keys import BASELINE, CALIBRATED, MODELS, OVERLAY_PROPERTY, RESULT_PROPERTY, RUN_ID
from harness.plugin.options import strict, twin_paths, uncalibrated_note


class ResultRecorder:
    """Gathers result records from test reports (under xdist they arrive from the workers) into
    the run's report as they come, lists every skip with its reason, finishes the report at session
    end (``complete: false`` unless every collected item ran) and prints the verdict table."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.records: list[dict] = []
        self.skipped: list[dict] = []
        self._writer = None
        self._seen: dict[str, int] = {}  # node id -> user properties already taken from its reports
        self.finished: set[str] = set()  # node ids whose teardown was reported: items that ran
        self.report_path: Path | None = None
        self.incomplete: str = ""  # why the run is incomplete ("" when it is complete)
        self.ran_text: str = ""

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    @property
    def active(self) -> bool:
        """An xai-harness run: models or a checkpoint were asked for (plain pytest runs write no report)."""
        return bool(self.config.stash[MODELS] or self.config.getoption("checkpoint"))

    def writer(self):
        """The report run of this pytest run, started on first use (controller process only)."""
        if self._writer is None:
            from harness.report import start_run

            self._writer = start_run(
                Path(self.config.getoption("report_dir")), run_id=self.config.stash[RUN_ID],
                meta={"argv": list(self.config.invocation_params.args),
                      "models": list(self.config.stash[MODELS]), "strict": strict(self.config),
                      "thresholds_calibrated_on": dict(self.config.stash[CALIBRATED]),
                      **_baseline_meta(self.config), **_checkpoint_meta(self.config)},
            )
        return self._writer

    def overlay(self, overlay: Any, user_properties: list) -> None:
        """Render an overlay into the run; a worker renders it and tells the controller where."""
        if not self.is_worker:
            self.writer().add_overlay(overlay)
            return
        from harness.report import render_overlay

        folder = Path(self.config.getoption("report_dir")) / self.config.stash[RUN_ID] / "overlays"
        folder.mkdir(parents=True, exist_ok=True)
        path = render_overlay(overlay, folder / f"{overlay.model}__{overlay.explainer}.png".replace(":", "_"))
        entry = {"path": f"overlays/{path.name}", "model": overlay.model, "explainer": overlay.explainer,
                 "title": overlay.title}
        user_properties.append((OVERLAY_PROPERTY, json.dumps(entry)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        self._take_properties(report)
        if report.skipped and (self.active or self._writer is not None):
            entry = {"item": report.nodeid, "reason": skip_reason(report)}
            self.skipped.append(entry)
            self.writer().add_skip(entry["item"], entry["reason"])
        if report.when == "teardown":
            self.finished.add(report.nodeid)
            self._seen.pop(report.nodeid, None)

    def _take_properties(self, report: pytest.TestReport) -> None:
        """Records and overlays added since this item's previous report (setup, call or teardown)."""
        properties = list(getattr(report, "user_properties", []))
        for key, value in properties[self._seen.get(report.nodeid, 0):]:
            if key == RESULT_PROPERTY:
                self.records.append(json.loads(value))
                self.writer().add(self.records[-1])
            elif key == OVERLAY_PROPERTY:
                entry = json.loads(value)
                self.writer().link_overlay(entry.pop("path"), **entry)
        self._seen[report.nodeid] = len(properties)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            return
        if exitstatus == pytest.ExitCode.OK and any(r.get("verdict") in ("fail", "error") for r in self.records):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # never green with a failing or erroring record
        collected, ran = session.testscollected, len(self.finished)
        self.incomplete = _incomplete_reason(session, int(session.exitstatus), collected, ran)
        self.ran_text = f"{ran} of {collected} collected items ran"
        if self._writer is None and not (self.active and ran):
            return  # nothing ran: nothing measured, nothing to report
        outcome = {"exit_status": int(session.exitstatus), "items_collected": collected, "items_run": ran,
                   "reason": self.incomplete or None}
        try:
            self.report_path = self.writer().finish(complete=not self.incomplete, session=outcome)
        except Exception:  # noqa: BLE001  (say so, and never exit 0 without the report)
            import logging

            logging.getLogger(__name__).exception("xai-harness could not finish the report")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        if self.skipped:
            terminalreporter.write_sep("=", f"xai-harness: {len(self.skipped)} skipped (not checked; --strict makes "
                                       "skips failures)")
            for entry in self.skipped:
                terminalreporter.write_line(f"SKIPPED {entry['item']}: {entry['reason']}")
        if self.records:
            self._write_table(terminalreporter)
        note = uncalibrated_note(self.config)
        if note:
            terminalreporter.write_line(f"xai-harness: {note}", yellow=True, bold=True)
        if self.report_path and self.incomplete:
            terminalreporter.write_line(f"xai-harness report (INCOMPLETE: {self.incomplete}, {self.ran_text}; "
                                        f"reports/latest not updated): {self.report_path}", red=True, bold=True)
        elif self.report_path:
            terminalreporter.write_line(f"xai-harness report: {self.report_path}")

    def _write_table(self, terminalreporter: Any) -> None:
        import io

        from rich.console import Console

        from harness.report import render_terminal_table

        buffer = io.StringIO()
        console = Console(file=buffer, width=max(100, terminalreporter._tw.fullwidth),
                          force_terminal=terminalreporter.hasmarkup, color_system="standard")
        render_terminal_table(self.records, console)
        terminalreporter.write_sep("=", "xai-harness: verdicts per model and check")
        terminalreporter.write(buffer.getvalue())


def _baseline_meta(config: pytest.Config) -> dict:
    """``{"baseline": "<path> (run <id>)"}`` when the run is compared with a ``--baseline`` run, else ``{}``."""
    baseline = config.stash.get(BASELINE, None)
    return {"baseline": f"{baseline.path} (run {baseline.run_id})"} if baseline is not None else {}


def _checkpoint_meta(config: pytest.Config) -> dict:
    """``{"checkpoint": {"path", "sha256"}, "twins": {kind: {...}}}`` for a ``--checkpoint`` run, else ``{}``:
    which weights the verdicts are about (the sha256 is the manifest's, verified when the weights load)."""
    path = config.getoption("checkpoint")
    if not path:
        return {}

    from harness.models.checkpoint_files import CheckpointError, read_manifest  # no torch

    def describe(weights: str) -> dict[str, str | None]:
        try:
            sha = read_manifest(Path(weights))["sha256"]
        except CheckpointError:
            sha = None  # the load itself reports what is wrong with it
        return {"path": str(Path(weights).resolve()), "sha256": sha}

    out: dict[str, Any] = {"checkpoint": describe(path)}
    twins = twin_paths(config)
    if twins:
        out["twins"] = {kind: describe(p) for kind, p in twins.items()}
    return out


def _incomplete_reason(session: pytest.Session, exitstatus: int, collected: int, ran: int) -> str:
    """Why the session did not run every collected item ("" when it did)."""
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return session.shouldstop if isinstance(session.shouldstop, str) else "interrupted (Ctrl-C)"
    if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
        return "an internal error stopped the session"
    if ran < collected:
        return next((s for s in (session.shouldfail, session.shouldstop) if isinstance(s, str)), "stopped early")
    return ""
