"""The pytest front end: options, YAML suite collection, one item per check x model x explainer.

Thin by design: hooks of a few lines; the work happens in ``harness.session.HarnessSession``.
Importing this module must stay cheap (no torch): it is loaded by every pytest run.

No silent green: options and paths are checked before any model is loaded (a mistake is a usage
error, exit 4); a model that cannot be loaded is one error with its cause, then an error per item
without a traceback; every skip is listed with its reason (``--strict`` makes skips failures); a run
that did not run every collected item is written ``complete: false`` and never replaces
``reports/latest``; a failing or erroring record never exits 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.checks.result import CATEGORIES

SESSION = pytest.StashKey["Any"]()
RUN_ID = pytest.StashKey[str]()
MODELS = pytest.StashKey["list[str]"]()
RESULT_PROPERTY = "xai_result"
OVERLAY_PROPERTY = "xai_overlay"
RECORDER = "xai-harness-recorder"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xai-harness", "explanation checks of trained models")
    group.addoption("--model", default=None, metavar="NAME[,NAME...]",
                    help="zoo model(s) to check, comma separated, or 'all' (see `xai-harness zoo`)")
    group.addoption("--profile", default=None, choices=["cpu", "gpu"],
                    help="training/evaluation profile (default: gpu when CUDA is available, else cpu)")
    group.addoption("--checkpoint", default=None, metavar="PATH",
                    help="check an external checkpoint (.safetensors with its .json manifest), e.g. a release candidate")
    group.addoption("--checkpoint-dir", default=None, metavar="DIR",
                    help="checkpoint store (default: $XAI_HARNESS_CHECKPOINTS or the user cache directory)")
    group.addoption("--report-dir", default="reports", metavar="DIR", help="where run reports are written")
    group.addoption("--max-images", type=int, default=None, metavar="N",
                    help="cap on test images per split, N >= 1 (default: the suite's max_images, else all)")
    group.addoption("--finding", default=None, metavar="NAME",
                    help="multi-label models: the finding whose scores, maps and masks the checks read")


def pytest_configure(config: pytest.Config) -> None:
    for category in CATEGORIES:
        config.addinivalue_line("markers", f"{category}: xai-harness {category} checks")
    config.addinivalue_line("markers", "xai: every check collected from a YAML suite")
    config.pluginmanager.register(ResultRecorder(config), RECORDER)
    config.stash[MODELS] = _requested_models(config)
    config.stash[SESSION] = None
    config.stash[RUN_ID] = getattr(config, "workerinput", {}).get("xai_run_id") or _new_run_id()
    _check_options(config)


def _check_options(config: pytest.Config) -> None:
    """Every option and path checked before any model is loaded; a mistake is a usage error (exit 4)."""
    max_images = config.getoption("max_images")
    if max_images is not None and max_images < 1:
        raise pytest.UsageError(f"--max-images must be at least 1, got {max_images}; leave it out to use every image")
    if hasattr(config, "workerinput"):  # the controller checked the paths already
        return
    checkpoint, store = config.getoption("checkpoint"), config.getoption("checkpoint_dir")
    if checkpoint:
        _check_checkpoint(checkpoint)
    if store and Path(store).expanduser().exists() and not Path(store).expanduser().is_dir():
        raise pytest.UsageError(f"--checkpoint-dir {store} is not a directory; pass the checkpoint store's folder")
    if config.stash[MODELS] or checkpoint:
        _check_writable(Path(config.getoption("report_dir")).expanduser())
    if config.stash[MODELS] and config.getoption("profile") == "gpu":
        import torch  # the run needs it anyway

        if not torch.cuda.is_available():
            raise pytest.UsageError("--profile gpu needs a CUDA device, and torch sees none; use --profile cpu here")


def _check_checkpoint(path: str) -> None:
    """``--checkpoint`` must be a weights file with a readable manifest (sha256 is checked at load)."""
    from harness.models.checkpoint_files import CheckpointError, read_manifest  # no torch

    try:
        read_manifest(Path(path).expanduser())
    except CheckpointError as err:
        raise pytest.UsageError(f"--checkpoint: {err}; pass a .safetensors file written by xai-harness, with its "
                                ".json manifest beside it") from None


def _check_writable(folder: Path) -> None:
    """A file can be written in the report directory (or, if it does not exist yet, in the nearest
    folder above it, where it will be created); nothing is left behind."""
    import os
    import tempfile

    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is not a directory")
        handle, probe = tempfile.mkstemp(prefix=".xai-harness-probe-", dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise pytest.UsageError(f"--report-dir {folder} is not writable ({err.strerror or err}); pass a writable "
                                "directory with --report-dir DIR") from None


def strict(config: pytest.Config) -> bool:
    """pytest's ``--strict`` (or ``strict = true`` in the ini file): xai-harness then counts skips as failures."""
    try:
        if config.getini("strict"):
            return True
    except ValueError:  # a pytest without the strict ini option
        pass
    return bool(config.getoption("strict", default=False))


def _requested_models(config: pytest.Config) -> list[str]:
    """Validate --model against the zoo; an unknown name is a usage error listing the known ones."""
    value = config.getoption("model")
    if not value:
        return []
    from harness.models.zoo import list_zoo  # reads fixtures/zoo.yaml; no torch

    known = [entry.name for entry in list_zoo()]
    if value == "all":  # the entries meant for this run's profile (e.g. vit_large is gpu-only)
        profile = config.getoption("profile")
        if profile is None:
            from harness.models.trainer import default_profile

            profile = default_profile()
        return [entry.name for entry in list_zoo(profile=profile)]
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise pytest.UsageError(
            f"unknown model {', '.join(map(repr, unknown))}; known models: {', '.join(known)} (or 'all')"
        )
    return names


def _new_run_id() -> str:
    from harness.report.results_file import new_run_id  # light: no torch, no matplotlib

    return new_run_id()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: every worker writes into the controller's run directory."""
    node.workerinput["xai_run_id"] = node.config.stash[RUN_ID]


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml") and file_path.parent.name == "suites":
        return SuiteFile.from_parent(parent, path=file_path)
    return None


def session_of(config: pytest.Config):
    """The HarnessSession of this pytest run, created on first use (imports torch then)."""
    if config.stash[SESSION] is None:
        from harness.session import HarnessSession

        config.stash[SESSION] = HarnessSession(
            profile=config.getoption("profile"),
            checkpoint=config.getoption("checkpoint"),
            checkpoint_dir=config.getoption("checkpoint_dir"),
            max_images=config.getoption("max_images"),
            finding=config.getoption("finding"),
        )
    return config.stash[SESSION]


class SuiteFile(pytest.File):
    """A YAML suite: one CheckItem per check x model x explainer, grouped by model."""

    def collect(self) -> Iterator[pytest.Item]:
        from harness.suites import load_suite

        suite = load_suite(self.path)
        models = list(self.config.stash[MODELS])
        if self.config.getoption("checkpoint"):
            models = models + [session_of(self.config).checkpoint_name]
        if not models:
            raise SuiteCollectError(
                f"{self.path}: suites check trained models: pass --model NAME[,NAME...] (or 'all'), "
                "or --checkpoint PATH; list the zoo with `xai-harness zoo`"
            )
        for model in models:
            reason = _not_applicable(suite, model)
            if reason:
                yield NotApplicable.from_parent(self, name=f"{suite.name}[{model}]", reason=reason)
                continue
            for check in suite.checks:
                for explainer in check.explainers:
                    name = f"{check.id}[{model}-{explainer}]" if explainer != "-" else f"{check.id}[{model}]"
                    yield CheckItem.from_parent(self, name=name, suite=suite, check=check, model=model,
                                                explainer=None if explainer == "-" else explainer)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        from harness.suites import SuiteError

        if isinstance(excinfo.value, (SuiteError, SuiteCollectError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)


def load_visibly(config: pytest.Config, model: str, suite=None):
    """Load (and on first use train) ``model`` with output capture off, so the training message and
    progress bars reach the terminal instead of the captured output of one item."""
    import contextlib

    capture = config.pluginmanager.getplugin("capturemanager")
    quiet = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with quiet:
        return session_of(config).context(model, suite)


def unavailable_text(err) -> str:
    """What an item of a model that cannot be loaded says: the cause in full once, then one line."""
    if not err.first:
        return (f"model {err.model!r} cannot be loaded ({type(err.cause).__name__}: the cause is in full at the "
                "model's first error); not retried")
    import traceback

    text = f"{err}"
    if not err.explained:  # not one of the harness's own errors: the traceback shows where it came from
        text += "\n" + "".join(traceback.format_exception(err.cause))
    return text + "\nEvery other item of this model is reported as an error without loading it again."


def data_problem(ctx, check, model: str) -> str:
    """Why the data of a check's split is too thin to measure anything ("" when it is not): fewer than
    two images, or no positive or no negative case (e.g. after ``--max-images 1``)."""
    try:
        _, params, _ = check.for_model(model, ctx.architecture, str(ctx.manifest.get("profile", "")))
        split = str(params.get("split", "test"))
        labels = ctx.labels(split)
    except Exception:  # noqa: BLE001  (the check's own error says what went wrong)
        return ""
    n, positives = int(labels.numel()), int((labels == 1).sum())
    problems = [f"only {n} image{'' if n == 1 else 's'}"] if n < 2 else []
    problems += ["no positive case"] if positives == 0 else ["no negative case"] if positives == n else []
    if not problems:
        return ""
    cap = f", capped at {ctx.max_images} by --max-images or the suite's max_images" if ctx.max_images else ""
    return f"split {split!r} has {' and '.join(problems)}{cap}: too little data for this check"


class SuiteCollectError(Exception):
    """A suite cannot be collected for a reason the message states."""


class OverlayNotDrawn(UserWarning):
    """A heatmap overlay could not be drawn; the check's record is kept."""


class CheckFailed(Exception):
    """A check whose condition does not hold; carries the result record."""


class ConditionUninformative(UserWarning):
    """A control passed a condition: the condition cannot tell a model-independent map from an explanation."""


def _not_applicable(suite, model: str) -> str:
    """Why ``suite`` does not apply to zoo model ``model`` (its ``datasets`` key), or ""."""
    if not suite.datasets or model.startswith("checkpoint:"):
        return ""
    from harness.models.zoo import get_zoo_entry

    dataset = get_zoo_entry(model).dataset
    if dataset in suite.datasets:
        return ""
    return f"suite {suite.name!r} applies to datasets {', '.join(suite.datasets)}; {model} is trained on {dataset}"


class NotApplicable(pytest.Item):
    """Stands for a suite that does not apply to a model: one skip with the reason, not silence."""

    def __init__(self, *, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reason = reason
        self.add_marker("xai")

    def runtest(self) -> None:
        pytest.skip(self.reason)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, self.name


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Under ``--strict`` a skipped xai-harness item (a suite that does not apply, a Python check of the
    model under test) fails with the skip's reason."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail") and _is_xai(item) and strict(item.config):
        report.outcome = "failed"
        report.longrepr = f"skipped, and --strict counts a skip as a failure: {skip_reason(report)}"
    return report


def _is_xai(item: pytest.Item) -> bool:
    return isinstance(item, (CheckItem, NotApplicable)) or "xai_model" in getattr(item, "fixturenames", ())


def skip_reason(report: pytest.TestReport) -> str:
    """The reason of a skipped report, without pytest's ``Skipped: `` prefix."""
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ")


class CheckItem(pytest.Item):
    """One check of one model with one explainer; its verdict is the test outcome."""

    def __init__(self, *, suite, check, model: str, explainer: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite, self.check, self.model, self.explainer = suite, check, model, explainer
        from harness.checks.registry import get_check  # registered at suite load already

        self.category = get_check(check.check).category
        for mark in ("xai", self.category):
            self.add_marker(mark)
        self.add_marker(pytest.mark.xdist_group(model))

    def setup(self) -> None:
        """Load (on first use train) the model; one that cannot be loaded makes this item an error with
        the cause (in full at the model's first item), recorded in the report, never retried."""
        from harness.session import ModelUnavailable

        try:
            load_visibly(self.config, self.model, self.suite)
            return
        except ModelUnavailable as err:
            unavailable = err
        record = session_of(self.config).unavailable_result(self.suite, self.check, self.model, self.explainer)
        self.user_properties.append((RESULT_PROPERTY, json.dumps(record.to_dict())))
        pytest.fail(unavailable_text(unavailable), pytrace=False)  # outside ``except``: no chained traceback

    def runtest(self) -> None:
        session = session_of(self.config)
        record = session.run_item(self.suite, self.check, self.model, self.explainer)
        record = self._judged(session, record)
        self.user_properties.append((RESULT_PROPERTY, json.dumps(record.to_dict())))
        self._hand_over_overlays(session)
        verdict = record.verdict.value
        if verdict == "uninformative":  # not the model's fault, but its passes of this condition mean little
            import warnings

            warnings.warn(ConditionUninformative(f"{record.check} [{record.model}]: {record.message}"), stacklevel=1)
        if verdict == "skip":
            pytest.skip(record.message)
        if verdict in ("fail", "error"):
            raise CheckFailed(record)

    def _judged(self, session, record):
        """The record with the data problem behind an error named, and a skip made an error under --strict."""
        import dataclasses

        verdict = record.verdict.value
        if verdict == "error":
            problem = data_problem(session.context(self.model, self.suite), self.check, self.model)
            if problem:
                record = dataclasses.replace(record, message=f"{problem} ({record.message})",
                                             details={**record.details, "data_problem": problem})
        if verdict == "skip" and strict(self.config):
            from harness.checks.result import Verdict

            record = dataclasses.replace(record, verdict=Verdict.ERROR,
                                         message=f"skipped, and --strict counts a skip as a failure: {record.message}")
        return record

    def _hand_over_overlays(self, session) -> None:
        """Give the queued overlays to the report; one that cannot be drawn is a warning, never a lost record."""
        import warnings

        recorder = self.config.pluginmanager.get_plugin(RECORDER)
        while session.new_overlays:
            overlay = session.new_overlays.pop(0)
            try:
                recorder.overlay(overlay, self.user_properties)
            except Exception as err:  # noqa: BLE001
                warnings.warn(OverlayNotDrawn(f"overlay {overlay.title or overlay.explainer!r} of {overlay.model} "
                                              f"not drawn: {type(err).__name__}: {err}"), stacklevel=1)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None) -> str:
        if isinstance(excinfo.value, CheckFailed):
            r = excinfo.value.args[0]
            text = (f"{r.verdict.value.upper()}: {r.check} [{r.model} / {r.architecture} / {r.explainer}]\n"
                    f"  {r.message}")
            shown = "traceback" in r.details and "data_problem" not in r.details
            return text + ("\n" + r.details["traceback"] if shown else "")
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.check.line - 1, f"{self.check.id} [{self.model}]"


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
                      "models": list(self.config.stash[MODELS]), "strict": strict(self.config)},
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


def _incomplete_reason(session: pytest.Session, exitstatus: int, collected: int, ran: int) -> str:
    """Why the session did not run every collected item ("" when it did)."""
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        return session.shouldstop if isinstance(session.shouldstop, str) else "interrupted (Ctrl-C)"
    if exitstatus == pytest.ExitCode.INTERNAL_ERROR:
        return "an internal error stopped the session"
    if ran < collected:
        return next((s for s in (session.shouldfail, session.shouldstop) if isinstance(s, str)), "stopped early")
    return ""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Python checks that take ``xai_model`` run once per ``--model`` (and ``--checkpoint``)."""
    if "xai_model" in metafunc.fixturenames:
        names = list(metafunc.config.stash[MODELS])
        if metafunc.config.getoption("checkpoint"):
            names.append(session_of(metafunc.config).checkpoint_name)
        metafunc.parametrize("xai_model", names, indirect=True,
                             ids=names or None)


@pytest.fixture
def xai_model(request: pytest.FixtureRequest):
    """The ModelContext of one model under test: ``.model``, ``.dataset(split)``, ``.probs(split)``,
    ``.maps(explainer, split)``, ``.unit_maps(...)``; loaded once per run and shared with the suites."""
    if not hasattr(request, "param"):
        pytest.skip("pass --model NAME (or --checkpoint PATH) to run checks that use xai_model")
    from harness.session import ModelUnavailable

    try:
        return load_visibly(request.config, request.param)
    except ModelUnavailable as err:
        unavailable = err
    pytest.fail(unavailable_text(unavailable), pytrace=False)  # outside ``except``: no chained traceback


@pytest.fixture
def model(xai_model):
    """The model under test (``torch.nn.Module`` in eval mode, on the run's device)."""
    return xai_model.model


@pytest.fixture
def dataset(xai_model):
    """The model's test split as an ImageSet (images, labels, lesion/lung/artifact masks)."""
    return xai_model.dataset("test")


@pytest.fixture
def explain(xai_model):
    """``explain(explainer="gradcam", images=None, *, split="test", target=None, unit=False) -> maps [N,1,H,W]``.

    Without ``images`` and ``target``, the cached maps of the whole split (shared with the suites);
    with ``images`` (float [N,1,H,W] in [0,1]) or another ``target`` class, fresh maps. The default
    target is the checked class (the positive class, or ``--finding`` for multi-label models).
    """
    from harness.explain.context import explain_batched

    def explain_maps(explainer: str = "gradcam", images=None, *, split: str = "test", target: int | None = None,
                     unit: bool = False):
        method = xai_model.explainer(explainer)
        if images is None and target is None:
            maps = xai_model.maps(explainer, split)
        else:
            images = xai_model.images(split) if images is None else images
            target = xai_model.target_class if target is None else target
            maps = explain_batched(xai_model.model, method, images, xai_model.batch_size, target=target)
        return method.unit_view(maps) if unit else maps

    return explain_maps


@pytest.fixture
def check(request: pytest.FixtureRequest, xai_model):
    """``check(name, explainer=None, *, require, severity="fail", **params)``: run a registered check on the
    model under test, record it in the report and raise AssertionError on fail or error.

    Example: ``check("diffgradcam", "gradcam", require="ci_low >= 0.10")``.
    """
    from harness.checks.api import evaluate
    from harness.checks.result import Verdict

    def run(name: str, explainer: str | None = None, *, require: str, severity: str = "fail", **params):
        result = evaluate(name, xai_model, explainer, require=require, severity=severity,
                          suite=request.node.path.name, **params)
        request.node.user_properties.append((RESULT_PROPERTY, json.dumps(result.to_dict())))
        if result.verdict in (Verdict.FAIL, Verdict.ERROR):
            raise AssertionError(f"{name} [{xai_model.name} / {explainer or '-'}]: {result.message}")
        return result

    return run


@pytest.fixture
def xai_session(request: pytest.FixtureRequest):
    """The HarnessSession of this run (model contexts, run directory)."""
    return session_of(request.config)
