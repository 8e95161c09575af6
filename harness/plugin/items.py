"""Collection and items: a YAML suite file yields one CheckItem per check x model x explainer; a suite
that does not apply to a model yields one skip with the reason; a model that cannot be loaded is one
error with its cause, then one line per item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.plugin.discovery import is_suite_file
from harness.plugin.keys import BASELINE, CALIBRATED, MODELS, RECORDER, RESULT_PROPERTY
from harness.plugin.options import calibrated_profile, session_of, strict


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    """Any YAML file with a top-level ``suite:`` key, in any folder (``harness.plugin.discovery``)."""
    if is_suite_file(parent.config, file_path, named=parent.session.isinitpath(file_path)):
        return SuiteFile.from_parent(parent, path=file_path)
    return None


class SuiteFile(pytest.File):
    """A YAML suite: one CheckItem per check x model x explainer, grouped by model."""

    def collect(self) -> Iterator[pytest.Item]:
        from harness.suites import load_suite

        suite = load_suite(self.path)
        if suite.calibration is not None:
            self.config.stash[CALIBRATED][suite.name] = calibrated_profile(suite.calibration)
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
        _, params, _ = check.for_model(model, ctx.architecture, str(ctx.manifest.get("profile", "")), ctx.family)
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
    """Why ``suite`` does not apply to zoo model ``model`` (a pretraining backbone, or not one of its
    ``datasets``), or ""."""
    return not_applicable(f"suite {suite.name!r}", suite.datasets, model)


def not_applicable(what: str, datasets, model: str) -> str:
    """Why ``what`` (a suite, a Python check marked ``xai_datasets``) does not apply to zoo model ``model``:
    a pretraining backbone, or trained on none of ``datasets``; "" if it applies or the zoo cannot tell
    (an external checkpoint: its dataset is known once loaded, see :func:`dataset_mismatch`)."""
    if model.startswith("checkpoint:"):
        return ""
    from harness.models.zoo import ZooError, get_zoo_entry

    try:
        entry = get_zoo_entry(model)
    except ZooError:
        if datasets:
            raise
        return ""  # for any data: nothing to decide from
    if entry.purpose == "pretraining":
        return (f"{model} is a pretraining backbone (purpose: pretraining in {entry.source}): it is trained on "
                f"another task for the models built on it, and those are judged; {what} does not apply")
    return dataset_mismatch(what, datasets, model, entry.dataset)


def dataset_mismatch(what: str, datasets, model: str, dataset: str) -> str:
    """Why ``what`` does not apply to a model trained on ``dataset``, or "" (no ``datasets``: any applies)."""
    if not datasets or dataset in datasets:
        return ""
    return f"{what} applies to datasets {', '.join(datasets)}; {model} is trained on {dataset}"


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
        the cause (in full at the model's first item), recorded in the report, never retried. A checkpoint
        trained on none of the suite's ``datasets`` skips with the reason (an error under ``--strict``)."""
        from harness.session import ModelUnavailable

        try:
            ctx = load_visibly(self.config, self.model, self.suite)
        except ModelUnavailable as err:
            unavailable = err
        else:  # an external checkpoint's dataset is known only now (a zoo model's was decided at collection)
            reason = dataset_mismatch(f"suite {self.suite.name!r}", self.suite.datasets, ctx.name,
                                      ctx.manifest["dataset"]["name"])
            if reason:
                pytest.skip(reason)
            return
        record = session_of(self.config).unavailable_result(self.suite, self.check, self.model, self.explainer)
        self.user_properties.append((RESULT_PROPERTY, json.dumps(record.to_dict())))
        pytest.fail(unavailable_text(unavailable), pytrace=False)  # outside ``except``: no chained traceback

    def runtest(self) -> None:
        session = session_of(self.config)
        record = session.run_item(self.suite, self.check, self.model, self.explainer)
        record = self._against_baseline(record)  # before _judged: --strict then gates a regressed reported check
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

    def _against_baseline(self, record):
        """With ``--baseline``: the record compared with the baseline's same check (a regression fails a gate)."""
        baseline = self.config.stash.get(BASELINE, None)
        if baseline is None:
            return record
        from harness.report.baseline import judge_against_baseline

        entry = baseline.compare(record.to_dict(), self.check.regression_margin)
        return judge_against_baseline(record, entry)

    def _judged(self, session, record):
        """The record with the data problem behind an error named, and a skip or a warning made an error under
        --strict."""
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
        if verdict == "warn" and strict(self.config):  # a reported-only condition that does not hold gates too
            from harness.checks.result import Verdict

            record = dataclasses.replace(record, verdict=Verdict.ERROR, message="severity warn, and --strict counts "
                                         f"a warning as a failure: {record.message}")
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
