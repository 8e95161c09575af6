"""The label CSV of a generic dataset, row by row: every bad row is collected and named, none dropped.

:func:`read_rows` checks the whole CSV (every split) and the files it points at, and raises one
:class:`DatasetRowsError` that lists the first bad rows (file, line, image, what is wrong) and
how many there are in all.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.data.generic_spec import SPLIT_VALUES, DatasetSpecError, GenericSpec, MaskSource, csv_header
from harness.data.imageset import (
    SEX_FEMALE,
    SEX_MALE,
    SEX_UNKNOWN,
    VIEW_AP,
    VIEW_LATERAL,
    VIEW_PA,
    VIEW_UNKNOWN,
)

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
SHOWN_ERRORS = 20
LABEL_VALUES = {"0": 0.0, "0.0": 0.0, "1": 1.0, "1.0": 1.0}
SPLIT_ALIASES = {"valid": "val", "validation": "val"}
SEX_VALUES = {"m": SEX_MALE, "male": SEX_MALE, "f": SEX_FEMALE, "female": SEX_FEMALE,
              "": SEX_UNKNOWN, "u": SEX_UNKNOWN, "unknown": SEX_UNKNOWN, "o": SEX_UNKNOWN, "other": SEX_UNKNOWN}
VIEW_VALUES = {"pa": VIEW_PA, "ap": VIEW_AP, "lateral": VIEW_LATERAL, "lat": VIEW_LATERAL, "ll": VIEW_LATERAL,
               "": VIEW_UNKNOWN}


class DatasetRowsError(DatasetSpecError):
    """Bad rows of a generic dataset's CSV (or of the files they point at), all listed in one error.

    Attributes:
        errors: one line per problem: ``labels.csv, line 7 (image 'a12'): ...``.
    """

    def __init__(self, spec: GenericSpec, errors: list[str], n_rows: int, stage: str = "") -> None:
        self.errors = list(errors)
        shown = "\n  ".join(self.errors[:SHOWN_ERRORS])
        more = f"\n  ... and {len(errors) - SHOWN_ERRORS} more" if len(errors) > SHOWN_ERRORS else ""
        super().__init__(f"{spec.path}: {len(errors)} problem(s) in {n_rows} row(s) of {spec.labels.name}{stage}; "
                         f"fix or remove the rows:\n  {shown}{more}")


@dataclass
class Rows:
    """Every row of the CSV, checked, in file order (all splits)."""

    lines: list[int]
    ids: list[str]
    images: list[Path]
    labels: np.ndarray  # float32 [N, K] in {0, 1}, NaN = unknown
    patient_ids: np.ndarray  # int64 [N]
    splits: list[str]  # per row; empty strings when the split is not a column
    metadata: dict[str, np.ndarray] = field(default_factory=dict)
    metadata_codes: dict[str, list[str]] = field(default_factory=dict)  # categorical column -> value of code k
    masks: dict[str, list[Path | None]] = field(default_factory=dict)  # "lesion:<finding>", "lungs", "artifact:<n>"

    def __len__(self) -> int:
        return len(self.ids)


def read_rows(spec: GenericSpec) -> Rows:
    """Read and check every row of ``spec``'s CSV; raise :class:`DatasetRowsError` listing every bad one."""
    header, records = _read_csv(spec.labels)
    errors: list[str] = []
    images = FileIndex(spec.images, IMAGE_SUFFIXES + DICOM_SUFFIXES)
    mask_indexes = {key: FileIndex(s.folder, MASK_SUFFIXES) for key, s in _mask_sources(spec).items()
                    if s.folder is not None and s.column is None}
    parsed, seen, bad_lines = [], {}, set()
    for line, record in records:
        where = f"{spec.labels.name}, line {line} (image {record.get(spec.id_column, '')!r})"
        problems: list[str] = []
        row = _parse(spec, record, images, mask_indexes, problems)
        image_id = row["id"]
        if image_id in seen:
            problems.append(f"duplicate image id {image_id!r}: also on line {seen[image_id]}")
        seen.setdefault(image_id, line)
        errors += [f"{where}: {p}" for p in problems]
        bad_lines.update([line] if problems else [])
        parsed.append((line, row))
    leaks = _patients_in_two_splits(spec, parsed)
    errors += [message for _, message in leaks]
    bad_lines.update(line for line, _ in leaks)
    if errors:
        raise DatasetRowsError(spec, errors, len(bad_lines))
    if not parsed:
        raise DatasetSpecError(f"{spec.path}: {spec.labels.name} has a header but no rows")
    _warn_orphan_masks(spec, mask_indexes, parsed)
    return _assemble(spec, parsed)


class FileIndex:
    """File stem -> paths of the files with ``suffixes`` below ``folder`` (several = ambiguous)."""

    def __init__(self, folder: Path, suffixes: tuple[str, ...]) -> None:
        self.folder, self.suffixes, self.by_stem = folder, suffixes, {}
        for parent, _dirs, files in os.walk(folder):
            for name in files:
                if name.lower().endswith(suffixes) and not name.startswith("."):
                    self.by_stem.setdefault(Path(name).stem, []).append(Path(parent) / name)

    def find(self, key: str) -> tuple[Path | None, str]:
        """The file that ``key`` names: a stem (``a12``), a file name (``a12.png``) or a path below the
        folder (``site1/a12.png``, ``site1/a12``); ``(None, why not)`` when none or several match."""
        known = Path(key).suffix.lower() in self.suffixes  # ids such as DICOM UIDs hold dots
        if "/" in key or "\\" in key:
            tries = [self.folder / key] if known else [self.folder / f"{key}{s}" for s in self.suffixes]
            candidates = [p for p in tries if p.is_file()]
        else:
            stem = Path(key).stem if known else key
            candidates = [p for p in self.by_stem.get(stem, []) if not known or p.name == key]
        if len(candidates) == 1:
            return candidates[0], ""
        if not candidates:
            return None, f"no file named {key!r} (with {', '.join(self.suffixes)}) below {self.folder}"
        names = ", ".join(str(p.relative_to(self.folder)) for p in sorted(candidates))
        return None, f"several files match {key!r} below {self.folder}: {names}; keep one or name it with its suffix"

    def stems(self) -> set[str]:
        return set(self.by_stem)


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    opener = gzip.open if path.suffix == ".gz" else open
    header = csv_header(path)
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        records = []
        for row in reader:
            if row and any(cell.strip() for cell in row):
                records.append((reader.line_num, dict(zip(header, (v.strip() for v in row)))))
    return header, records


def _mask_sources(spec: GenericSpec) -> dict[str, MaskSource]:
    sources = {f"lesion:{finding}": s for finding, s in spec.lesions.items()}
    if spec.lungs is not None:
        sources["lungs"] = spec.lungs
    sources.update({f"artifact:{name}": s for name, s in spec.artifacts.items()})
    return sources


def _parse(spec: GenericSpec, record: dict[str, str], images: FileIndex, mask_indexes: dict[str, FileIndex],
           problems: list[str]) -> dict:
    """One CSV row as values; what is wrong with it goes to ``problems``."""
    image_id = record.get(spec.id_column, "")
    if not image_id:
        problems.append(f"column {spec.id_column!r} is blank")
    key = record.get(spec.image_column, "") if spec.image_column else image_id
    image, why = images.find(key) if key else (None, f"column {spec.image_column!r} is blank")
    if image is None:
        problems.append(f"missing image file: {why}")
    row = {"id": image_id, "image": image, "labels": _labels(spec, record, problems),
           "patient": _patient(spec, record, image_id, problems), "split": _split_value(spec, record, problems),
           "metadata": _metadata(spec, record, problems), "masks": {}}
    if image is None:
        return row  # its masks are looked for once the image is found
    for name, source in _mask_sources(spec).items():
        row["masks"][name] = _mask_path(spec, source, record, mask_indexes.get(name), image.stem, name, problems)
    return row


def _labels(spec: GenericSpec, record: dict[str, str], problems: list[str]) -> np.ndarray:
    labels = np.zeros(len(spec.findings), dtype=np.float32)
    for k, column in enumerate(spec.findings):
        text = record.get(column, "")
        if text in LABEL_VALUES:
            labels[k] = LABEL_VALUES[text]
        elif text == "" and spec.missing_labels != "error":
            labels[k] = np.nan if spec.missing_labels == "unknown" else 0.0
        elif text == "":
            problems.append(f"column {column!r}: blank label; expected 0 or 1 (or set missing_labels: "
                            f"{'unknown or negative' if len(spec.findings) > 1 else 'negative'} in the YAML)")
        else:
            problems.append(f"column {column!r}: label {text!r} is not 0 or 1")
    return labels


def _patient(spec: GenericSpec, record: dict[str, str], image_id: str, problems: list[str]) -> str:
    if spec.patient_column is None:
        return f"image:{image_id}"  # every image is its own patient
    value = record.get(spec.patient_column, "")
    if not value:
        problems.append(f"column {spec.patient_column!r}: blank patient id")
    return value


def _split_value(spec: GenericSpec, record: dict[str, str], problems: list[str]) -> str:
    if spec.split.column is None:
        return ""
    raw = record.get(spec.split.column, "")
    value = SPLIT_ALIASES.get(raw.lower(), raw.lower())
    if value not in SPLIT_VALUES:
        problems.append(f"column {spec.split.column!r}: split {raw!r} is not one of {', '.join(SPLIT_VALUES)}")
    return value


def _metadata(spec: GenericSpec, record: dict[str, str], problems: list[str]) -> dict[str, object]:
    values: dict[str, object] = {}
    for name, column in spec.metadata.items():
        text = record.get(column, "")
        if name == "age":
            try:
                values[name] = float(text) if text else float("nan")
            except ValueError:
                problems.append(f"column {column!r} (age): {text!r} is not a number of years")
        elif name in ("sex", "view"):
            table = SEX_VALUES if name == "sex" else VIEW_VALUES
            if text.lower() not in table:
                allowed = ", ".join(repr(k) for k in table if k)
                problems.append(f"column {column!r} ({name}): {text!r} is not one of {allowed} or blank")
            values[name] = table.get(text.lower(), -1)
        else:
            values[name] = text
    return values


def _mask_path(spec: GenericSpec, source: MaskSource, record: dict[str, str], index: FileIndex | None, stem: str,
               name: str, problems: list[str]) -> Path | None:
    """The mask file of one row, or None where there is none (a missing anatomy mask is a problem)."""
    required = name == "lungs"
    if source.column is not None:
        text = record.get(source.column, "")
        if not text:
            if required:
                problems.append(f"column {source.column!r}: blank path of the lungs mask")
            return None
        path = (source.folder or spec.path.parent) / text
        if not path.is_file():
            problems.append(f"column {source.column!r}: mask file {path} not found")
            return None
        return path
    path, why = index.find(stem) if index is not None else (None, "")
    if path is None and (required or why.startswith("several")):
        problems.append(f"{name.replace(':', ' ')} mask: {why}")
    return path


def _patients_in_two_splits(spec: GenericSpec, parsed: list[tuple[int, dict]]) -> list[tuple[int, str]]:
    """A patient whose images sit in two splits of a split column leaks; name both lines."""
    if spec.split.column is None or spec.patient_column is None:
        return []
    first: dict[str, tuple[str, int]] = {}
    errors = []
    for line, row in parsed:
        patient, split = row["patient"], row["split"]
        if not patient or split not in SPLIT_VALUES:
            continue
        if patient in first and first[patient][0] != split:
            where = f"{spec.labels.name}, line {line} (image {row['id']!r})"
            errors.append((line, f"{where}: patient {patient!r} is in split {split!r} here and in "
                                 f"{first[patient][0]!r} on line {first[patient][1]}; a patient's images belong to "
                                 "one split"))
        first.setdefault(patient, (split, line))
    return errors


def _warn_orphan_masks(spec: GenericSpec, indexes: dict[str, FileIndex], parsed: list[tuple[int, dict]]) -> None:
    stems = {row["image"].stem for _, row in parsed}
    for name, index in indexes.items():
        orphans = sorted(index.stems() - stems)
        if orphans:
            log.warning("%s: %d file(s) in the %s mask folder %s match no image of %s and are not used: %s%s",
                        spec.path, len(orphans), name, index.folder, spec.labels.name, ", ".join(orphans[:5]),
                        " ..." if len(orphans) > 5 else "")


def _assemble(spec: GenericSpec, parsed: list[tuple[int, dict]]) -> Rows:
    rows = [row for _, row in parsed]
    patients = [r["patient"] for r in rows]
    metadata, codes = {}, {}
    for name in spec.metadata:
        values = [r["metadata"][name] for r in rows]
        metadata[name], found = _metadata_array(name, values)
        if found is not None:
            codes[name] = found
    return Rows(
        lines=[line for line, _ in parsed], ids=[r["id"] for r in rows], images=[r["image"] for r in rows],
        labels=np.stack([r["labels"] for r in rows]), patient_ids=_patient_numbers(patients),
        splits=[r["split"] for r in rows], metadata=metadata, metadata_codes=codes,
        masks={name: [r["masks"][name] for r in rows] for name in _mask_sources(spec)},
    )


def _patient_numbers(patients: list[str]) -> np.ndarray:
    """Integer patient ids: the values themselves when all are integers, else their rank in sorted order."""
    if all(_is_int(p) for p in patients):
        return np.array([int(p) for p in patients], dtype=np.int64)
    order = {p: k for k, p in enumerate(sorted(set(patients)))}
    return np.array([order[p] for p in patients], dtype=np.int64)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _metadata_array(name: str, values: list[object]) -> tuple[np.ndarray, list[str] | None]:
    """``age``: float32 years; ``sex``/``view``: int64 codes; other columns: float32 when every filled cell
    is a number (blank = NaN), else int64 codes of the sorted distinct values (blank = -1) and those values."""
    if name == "age":
        return np.array(values, dtype=np.float32), None
    if name in ("sex", "view"):
        return np.array(values, dtype=np.int64), None
    texts = [str(v) for v in values]
    try:
        return np.array([float(t) if t else np.nan for t in texts], dtype=np.float32), None
    except ValueError:
        distinct = sorted({t for t in texts if t})
        code = {t: k for k, t in enumerate(distinct)}
        return np.array([code.get(t, -1) for t in texts], dtype=np.int64), distinct
