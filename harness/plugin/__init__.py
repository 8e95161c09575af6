"""The pytest front end: options, YAML suite collection, one item per check x model x explainer.

Thin by design: hooks of a few lines; the work happens in ``harness.session.HarnessSession``.
Importing this package must stay cheap (no torch): it is loaded by every pytest run.

- ``options``: what a run asks for, checked before any model is loaded (a mistake is a usage error,
  exit 4); the session, created on first use.
- ``discovery``: any YAML file with a top-level ``suite:`` key is a suite (``xai_suite_glob`` narrows
  which); a command-line path that holds nothing to check is a usage error (exit 4).
- ``items``: a YAML suite file -> one item per check x model x explainer; a model that cannot be
  loaded is one error with its cause, then one line per item; ``--strict`` makes skips failures.
- ``recorder``: the report, written as records arrive; a run that did not run every collected item
  is ``complete: false`` and never replaces ``reports/latest``; a failing or erroring record never
  exits 0.
- ``fixtures``: ``xai_model``, ``model``, ``dataset``, ``explain``, ``check``, ``xai_session``.

pytest finds the hooks and fixtures below by their names in this module.
"""

from __future__ import annotations

from harness.plugin.discovery import (
    pytest_collection,
    pytest_collection_modifyitems,
    pytest_sessionfinish,
    pytest_testnodedown,
)
from harness.plugin.fixtures import check, dataset, explain, model, pytest_generate_tests, xai_model, xai_session
from harness.plugin.items import (
    CheckFailed,
    CheckItem,
    ConditionUninformative,
    NotApplicable,
    SuiteCollectError,
    SuiteFile,
    pytest_collect_file,
    pytest_runtest_makereport,
)
from harness.plugin.keys import MODELS, OVERLAY_PROPERTY, RECORDER, RESULT_PROPERTY, RUN_ID, SESSION
from harness.plugin.options import pytest_addoption, pytest_configure, pytest_configure_node, session_of, strict
from harness.plugin.recorder import ResultRecorder

__all__ = [
    "CheckFailed", "CheckItem", "ConditionUninformative", "MODELS", "NotApplicable", "OVERLAY_PROPERTY", "RECORDER",
    "RESULT_PROPERTY", "RUN_ID", "ResultRecorder", "SESSION", "SuiteCollectError", "SuiteFile", "check", "dataset",
    "explain", "model", "pytest_addoption", "pytest_collect_file", "pytest_configure", "pytest_configure_node",
    "pytest_collection", "pytest_collection_modifyitems", "pytest_generate_tests", "pytest_runtest_makereport",
    "pytest_sessionfinish", "pytest_testnodedown", "session_of", "strict", "xai_model", "xai_session",
]
