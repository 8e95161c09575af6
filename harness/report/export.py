"""Every per-image value of one or more runs as one long table (pandas), written as CSV and/or Parquet.

One row per (run, model, check, explainer, image): the image's index in its split, its id where the
dataset has ids, its patient and the value. Checks whose statistic is a mean of per-image values
(localisation, randomisation, stability, shortcut) give the per-image ``value``; set-level checks
(AUROC, sensitivity, ECE) give the image's ``score`` and ``label`` (column ``quantity`` says which).
Read from results.json alone (``details.samples``, or the older ``details.per_image``): nothing is
recomputed.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from harness.atomic import atomic_write_bytes, atomic_write_text
from harness.report.formatting import as_record, explainer_label, role_of

if TYPE_CHECKING:
    import pandas as pd

#: Columns of the per-image table, in order.
COLUMNS = ("run", "model", "architecture", "check", "explainer", "role", "metric", "split", "dataset",
           "image_index", "image_id", "patient", "quantity", "value", "label")
CSV_FILENAME = "per_image.csv"
PARQUET_FILENAME = "per_image.parquet"


class ExportError(RuntimeError):
    """An export that cannot be written as asked (e.g. Parquet without pyarrow)."""


def per_image_rows(run_id: str, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-image rows of one check record (none when it recorded no per-image values)."""
    record = as_record(record)
    details = record.get("details") or {}
    samples = details.get("samples") or {}
    if samples.get("kind") == "statistic":
        values, quantity, labels = samples.get("scores") or [], "score", samples.get("labels") or []
    elif samples.get("values") is not None:
        values, quantity, labels = samples["values"], "value", []
    elif details.get("per_image") is not None:  # records written before samples were kept
        values, quantity, labels = details["per_image"], "value", []
        samples = {"image_index": details.get("image_index"), "split": details.get("split")}
    else:
        return []
    base = {"run": run_id, "model": record.get("model"), "architecture": record.get("architecture"),
            "check": record.get("check"), "explainer": explainer_label(record), "role": role_of(record),
            "metric": record.get("metric"), "split": samples.get("split") or details.get("split"),
            "dataset": samples.get("dataset"), "quantity": quantity}
    index, ids, patients = (samples.get(k) or [] for k in ("image_index", "image_id", "patient"))
    return [{**base, "image_index": _at(index, i), "image_id": _at(ids, i), "patient": _at(patients, i),
             "value": value, "label": _at(labels, i)} for i, value in enumerate(values)]


def _at(values: Sequence[Any], i: int) -> Any:
    return values[i] if i < len(values) else None


def per_image_frame(runs: Iterable[tuple[Any, Mapping[str, Any]]]) -> pd.DataFrame:
    """The long table of every per-image value of ``runs`` (``(run_dir, results document)`` pairs).

    Returns:
        A DataFrame with :data:`COLUMNS`; ``value`` and ``label`` are floats (NaN where missing),
        ``image_index`` a nullable integer, ``image_id`` and ``patient`` strings (ids of different
        datasets need not share a type).
    """
    import pandas as pd

    rows = [row for _, document in runs for record in document.get("records", [])
            for row in per_image_rows(str(document.get("run_id")), record)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["label"] = pd.to_numeric(frame["label"], errors="coerce").astype("float64")
    frame["image_index"] = pd.to_numeric(frame["image_index"], errors="coerce").astype("Int64")
    for column in ("image_id", "patient"):
        frame[column] = frame[column].map(lambda x: None if x is None else str(x)).astype("string")
    text = [c for c in COLUMNS if c not in ("value", "label", "image_index", "image_id", "patient")]
    frame[text] = frame[text].astype("string")
    return frame


def write_exports(frame: pd.DataFrame, out_dir: Path | str, *, csv: bool = False, parquet: bool = False) -> list[Path]:
    """Write ``frame`` as ``per_image.csv`` and/or ``per_image.parquet`` into ``out_dir``, atomically.

    Raises:
        ExportError: Parquet was asked for and pyarrow is not installed (the message says how to fix it).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if csv:
        atomic_write_text(out_dir / CSV_FILENAME, frame.to_csv(index=False))
        written.append(out_dir / CSV_FILENAME)
    if parquet:
        if importlib.util.find_spec("pyarrow") is None:
            raise ExportError("Parquet export needs pyarrow: pip install pyarrow (or use --csv)")
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False, engine="pyarrow")
        atomic_write_bytes(out_dir / PARQUET_FILENAME, buffer.getvalue())
        written.append(out_dir / PARQUET_FILENAME)
    return written
