"""results.json: run ids, JSON-safe conversion, atomic writes, and reading a run back."""

from __future__ import annotations

import itertools
import json
import math
import os
import secrets
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, Mapping

from harness.atomic import atomic_write_text

RESULTS_FILENAME = "results.json"
SUMMARY_FILENAME = "summary.md"
OVERLAY_DIRNAME = "overlays"
FIGURE_DIRNAME = "figures"
#: Version of the results.json layout; bump it when a reader of the previous layout would misread a file.
SCHEMA_VERSION = 1


class ResultsSchemaError(ValueError):
    """A results.json this version of xai-harness cannot read (a newer or malformed ``schema``)."""


_SEQUENCE = itertools.count(secrets.randbelow(0x10000))  # next() is atomic under the GIL: thread-safe


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by time and does not collide between parallel runs.

    Args:
        now: The start time (default: the current time); converted to UTC.

    Returns:
        ``YYYYmmdd-HHMMSS-<pid>-<4 hex chars>``, e.g. ``20260509-071502-4242-a3f9``: the pid tells
        processes apart, and the last part counts up from a random start within one process (random
        bits alone collided: 50 ids in one second share a suffix about 2% of the time).
    """
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{os.getpid()}-{next(_SEQUENCE) % 0x10000:04x}"


def utc_now_iso() -> str:
    """The current UTC time as ISO 8601 with seconds, e.g. ``2026-05-09T07:15:02+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def to_jsonable(obj: Any) -> Any:
    """Convert ``obj`` into plain JSON values; NaN and inf become ``None``.

    Handles nested mappings and sequences, enums, paths, numpy scalars and arrays and torch
    tensors (anything with ``tolist``/``item``); anything else is written as ``str(obj)``.

    Args:
        obj: The value to convert.

    Returns:
        A structure of dict, list, str, int, float, bool and None only.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, Mapping):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "detach"):  # torch tensor: leave the graph and the device first
        obj = obj.detach().cpu()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return to_jsonable(obj.tolist())
    return str(obj)


def dump_json(document: Any) -> str:
    """Serialise ``document`` as indented, strictly valid JSON (no NaN) with a final newline; a list of
    plain values (per-image samples, curves) stays on one line, so a run's file is read by structure
    without one line per number (the demo's results.json: 1.05 MB with every number on its own line)."""
    return _dump(to_jsonable(document), 0) + "\n"


def _dump(obj: Any, depth: int) -> str:
    if isinstance(obj, dict) and obj:
        pad, inner = "  " * depth, "  " * (depth + 1)
        items = (f"{inner}{json.dumps(key)}: {_dump(value, depth + 1)}" for key, value in obj.items())
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and obj and any(isinstance(v, (dict, list)) for v in obj):
        pad, inner = "  " * depth, "  " * (depth + 1)
        return "[\n" + ",\n".join(inner + _dump(v, depth + 1) for v in obj) + f"\n{pad}]"
    return json.dumps(obj, allow_nan=False)


def atomic_write_json(path: Path, document: Any) -> None:
    """Write ``document`` as JSON to ``path`` atomically (see :func:`atomic_write_text`)."""
    atomic_write_text(path, dump_json(document))


def load_run(path: Path | str) -> dict[str, Any]:
    """Read a whole results document back.

    Args:
        path: A ``results.json`` file, or a run directory that contains one.

    Returns:
        The document: ``run_id``, ``created``, ``complete``, ``meta``, ``records``, ``overlays``,
        ``figures``, ``skipped`` (the last four default to empty lists for files written by other
        tools) and, for runs written by the pytest plugin, ``session`` (exit status, items collected
        and run, why the run is incomplete), and ``schema`` (absent before schemas existed).

    Raises:
        ResultsSchemaError: The file was written by a newer xai-harness (see :func:`check_schema`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILENAME
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict) or not isinstance(document.get("records"), list):
        raise ValueError(f"{path} is not a results file: no 'records' list")
    check_schema(document, path)
    for key in ("records", "overlays", "figures", "skipped"):
        document.setdefault(key, [])
    document.setdefault("meta", {})
    return document


def check_schema(document: Mapping[str, Any], path: Path | str) -> int:
    """The document's ``schema`` version; files written before versions existed read as 0.

    Raises:
        ResultsSchemaError: ``schema`` is not a non-negative integer, or is newer than
            :data:`SCHEMA_VERSION` (written by a newer xai-harness: upgrade to read it).
    """
    schema = document.get("schema", 0)
    if isinstance(schema, bool) or not isinstance(schema, int) or schema < 0:
        raise ResultsSchemaError(f"{path}: 'schema' must be a non-negative integer, got {schema!r}; "
                                 "the file is damaged or was not written by xai-harness")
    if schema > SCHEMA_VERSION:
        raise ResultsSchemaError(f"{path} has results schema {schema}, newer than this xai-harness reads "
                                 f"(up to {SCHEMA_VERSION}): upgrade xai-harness (pip install -U xai-harness) "
                                 "to read it")
    return schema


def load_results(path: Path | str) -> list[dict[str, Any]]:
    """Read the check records of a run back, as written by ``CheckResult.to_dict``.

    Args:
        path: A ``results.json`` file, or a run directory that contains one.

    Returns:
        One dict per check result; non-finite numbers come back as ``None``.
    """
    return load_run(path)["records"]
