"""The YAML that declares a team's own dataset (``dataset: generic``), parsed and checked strictly.

Every path is relative to the YAML file's folder. A mistake names the YAML file and the key, and
an unknown CSV column lists the CSV's columns. The schema, with an example: ``docs/datasets.md``.
"""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.data.imageset import normalise_finding

SPLIT_VALUES = ("train", "val", "test", "test_decorrelated")  # what a split column may hold
MISSING_LABELS = ("error", "unknown", "negative")  # what a blank label cell becomes
DEFAULT_FRACTIONS = (0.70, 0.15, 0.15)
_KEYS = {"name", "images", "labels", "id_column", "image_column", "findings", "missing_labels",
         "patient_column", "metadata", "split", "masks"}
_MASK_KEYS = {"lesions", "lungs", "artifacts"}
_SOURCE_KEYS = {"folder", "column"}


class DatasetSpecError(ValueError):
    """A dataset YAML (or its CSV header) that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class MaskSource:
    """Where the masks of one kind lie: a folder of files named like the images, or a CSV column of paths.

    ``column`` paths are relative to ``folder`` when both are given, else to the YAML's folder.
    """

    folder: Path | None = None
    column: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"folder": None if self.folder is None else str(self.folder), "column": self.column}


@dataclass(frozen=True)
class SplitRule:
    """How rows are split: ``test`` (every row), ``column`` (a CSV column) or ``patients`` (a seeded cut)."""

    mode: str = "test"
    column: str | None = None
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "column": self.column, "fractions": list(self.fractions), "seed": self.seed}


@dataclass(frozen=True)
class GenericSpec:
    """A parsed dataset YAML: see ``docs/datasets.md`` for every key."""

    path: Path
    name: str
    images: Path
    labels: Path
    id_column: str
    findings: tuple[str, ...]
    image_column: str | None = None
    missing_labels: str = "error"
    patient_column: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    split: SplitRule = field(default_factory=SplitRule)
    lesions: dict[str, MaskSource] = field(default_factory=dict)  # finding column -> source
    lungs: MaskSource | None = None
    artifacts: dict[str, MaskSource] = field(default_factory=dict)

    @property
    def finding_names(self) -> tuple[str, ...]:
        """The findings as the harness names them (lower-case snake_case)."""
        return tuple(normalise_finding(f) for f in self.findings)

    def columns_used(self) -> dict[str, str]:
        """Every CSV column the YAML names, with the key that names it."""
        used = {self.id_column: "id_column"}
        used.update({c: "findings" for c in self.findings})
        for key, column in (("image_column", self.image_column), ("patient_column", self.patient_column),
                            ("split.column", self.split.column)):
            if column:
                used[column] = key
        used.update({c: f"metadata.{n}" for n, c in self.metadata.items()})
        sources = {**{f"masks.lesions.{k}": v for k, v in self.lesions.items()},
                   **{f"masks.artifacts.{k}": v for k, v in self.artifacts.items()},
                   **({"masks.lungs": self.lungs} if self.lungs else {})}
        used.update({s.column: key for key, s in sources.items() if s.column})
        return used

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (part of the dataset's config and cache key)."""
        return {
            "path": str(self.path), "name": self.name, "images": str(self.images), "labels": str(self.labels),
            "id_column": self.id_column, "image_column": self.image_column, "findings": list(self.findings),
            "missing_labels": self.missing_labels, "patient_column": self.patient_column,
            "metadata": dict(self.metadata), "split": self.split.to_dict(),
            "lesions": {k: v.to_dict() for k, v in self.lesions.items()},
            "lungs": None if self.lungs is None else self.lungs.to_dict(),
            "artifacts": {k: v.to_dict() for k, v in self.artifacts.items()},
        }


def read_spec(path: str | Path) -> GenericSpec:
    """Parse and check the dataset YAML at ``path`` (folders, files and CSV columns included).

    Raises:
        DatasetSpecError: the file is missing or malformed, a key is unknown or has the wrong type,
            a folder or file it names does not exist, or a column it names is not in the CSV.
    """
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise DatasetSpecError(f"dataset file {path} does not exist; pass the path of a dataset YAML "
                               "(see docs/datasets.md)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise DatasetSpecError(f"{path}: not valid YAML ({err})") from None
    where = _Where(path)
    if not isinstance(raw, dict):
        raise DatasetSpecError(f"{path}: expected a mapping with keys images, labels, findings, ...")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise DatasetSpecError(f"{path}: unknown key(s) {unknown}; allowed: {', '.join(sorted(_KEYS))}")
    for key in ("images", "labels", "findings"):
        if key not in raw:
            raise DatasetSpecError(f"{path}: missing key {key!r} (see docs/datasets.md)")
    spec = GenericSpec(
        path=path,
        name=where.string(raw, "name", path.stem),
        images=where.folder(raw["images"], "images"),
        labels=where.file(raw["labels"], "labels"),
        id_column=where.string(raw, "id_column", "image_id"),
        image_column=where.string(raw, "image_column", None),
        findings=_findings(where, raw["findings"]),
        missing_labels=_choice(where, raw, "missing_labels", MISSING_LABELS),
        patient_column=where.string(raw, "patient_column", None),
        metadata=_metadata(where, raw.get("metadata")),
        split=_split(where, raw.get("split", "test")),
        **_masks(where, raw.get("masks"), raw["findings"]),
    )
    if spec.missing_labels == "unknown" and len(spec.findings) == 1:
        raise DatasetSpecError(f"{path}: missing_labels: unknown needs several findings (a multi-label set); "
                               "a binary set takes missing_labels: error or negative")
    check_columns(spec, csv_header(spec.labels))
    return spec


def csv_header(path: Path) -> list[str]:
    """The stripped column names of a CSV (optionally gzipped)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


def check_columns(spec: GenericSpec, header: list[str]) -> None:
    """Every column the YAML names must be in the CSV; the error lists the CSV's columns."""
    missing = [f"{column!r} ({key})" for column, key in spec.columns_used().items() if column not in header]
    if missing:
        raise DatasetSpecError(f"{spec.path}: column(s) {', '.join(missing)} not in {spec.labels.name}; "
                               f"its columns: {', '.join(header) or '(none: the file is empty)'}")


@dataclass(frozen=True)
class _Where:
    """Type checks of YAML values that name the file and the key."""

    path: Path

    def error(self, key: str, message: str) -> DatasetSpecError:
        return DatasetSpecError(f"{self.path}: key {key!r}: {message}")

    def string(self, raw: dict, key: str, default: str | None) -> str | None:
        value = raw.get(key, default)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise self.error(key, f"expected a non-empty string, got {value!r}")
        return value.strip() if isinstance(value, str) else value

    def folder(self, value: Any, key: str) -> Path:
        folder = self._path(value, key)
        if not folder.is_dir():
            raise self.error(key, f"folder {folder} does not exist (paths are relative to the YAML's folder)")
        return folder

    def file(self, value: Any, key: str) -> Path:
        file = self._path(value, key)
        if not file.is_file():
            raise self.error(key, f"file {file} does not exist (paths are relative to the YAML's folder)")
        return file

    def _path(self, value: Any, key: str) -> Path:
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"expected a path, got {value!r}")
        path = Path(value.strip()).expanduser()
        return (path if path.is_absolute() else self.path.parent / path).resolve()


def _findings(where: _Where, value: Any) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise where.error("findings", f"expected a column name or a non-empty list of them, got {value!r}")
    normalised = [normalise_finding(n) for n in names]
    if len(set(normalised)) != len(names):
        raise where.error("findings", f"finding names must be distinct (ignoring case and spaces), got {names}")
    return tuple(n.strip() for n in names)


def _choice(where: _Where, raw: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = raw.get(key, allowed[0])
    if value not in allowed:
        raise where.error(key, f"expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _metadata(where: _Where, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, list) and all(isinstance(c, str) for c in value):
        return {normalise_finding(c): c for c in value}  # columns named as they are (lower-cased)
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(c, str) for k, c in value.items()):
        raise where.error("metadata", f"expected a mapping name -> CSV column (e.g. {{age: Age, sex: Sex}}) "
                                      f"or a list of columns, got {value!r}")
    return dict(value)


def _split(where: _Where, value: Any) -> SplitRule:
    if value == "test":
        return SplitRule()
    if isinstance(value, dict) and set(value) == {"column"} and isinstance(value["column"], str):
        return SplitRule(mode="column", column=value["column"])
    if isinstance(value, dict) and "patients" in value and set(value) <= {"patients", "seed"}:
        fractions, seed = value["patients"], value.get("seed", 0)
        if fractions is None or fractions is True:
            fractions = list(DEFAULT_FRACTIONS)
        ok = (isinstance(fractions, list) and len(fractions) == 3
              and all(isinstance(f, (int, float)) and f >= 0 for f in fractions) and abs(sum(fractions) - 1) < 1e-6)
        if not ok:
            raise where.error("split.patients", f"expected three fractions train, val, test summing to 1, "
                                                f"got {fractions!r}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise where.error("split.seed", f"expected an integer >= 0, got {seed!r}")
        return SplitRule(mode="patients", fractions=tuple(float(f) for f in fractions), seed=seed)
    raise where.error("split", "expected 'test' (every row is test; the default), {column: NAME} (a column of "
                               f"{'/'.join(SPLIT_VALUES)}) or {{patients: [0.7, 0.15, 0.15], seed: 0}}, got {value!r}")


def _masks(where: _Where, value: Any, findings: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not set(value) <= _MASK_KEYS:
        raise where.error("masks", f"expected a mapping with keys {', '.join(sorted(_MASK_KEYS))}, got {value!r}")
    findings = [findings] if isinstance(findings, str) else list(findings)
    out: dict[str, Any] = {}
    if value.get("lungs") is not None:
        out["lungs"] = _source(where, value["lungs"], "masks.lungs")
    if value.get("lesions") is not None:
        out["lesions"] = _lesions(where, value["lesions"], findings)
    artifacts = value.get("artifacts") or {}
    if not isinstance(artifacts, dict):
        raise where.error("masks.artifacts", f"expected a mapping name -> folder, got {artifacts!r}")
    out["artifacts"] = {normalise_finding(str(k)): _source(where, v, f"masks.artifacts.{k}")
                        for k, v in artifacts.items()}
    return out


def _lesions(where: _Where, value: Any, findings: list[str]) -> dict[str, MaskSource]:
    if _is_source(value):
        if len(findings) != 1:
            raise where.error("masks.lesions", "one lesion folder fits a single finding; with several findings "
                                               f"give one per finding: {{{findings[0]}: DIR, ...}}")
        return {findings[0]: _source(where, value, "masks.lesions")}
    if not isinstance(value, dict):
        raise where.error("masks.lesions", f"expected a folder or a mapping finding -> folder, got {value!r}")
    by_name = {normalise_finding(f): f for f in findings}
    out = {}
    for key, source in value.items():
        finding = by_name.get(normalise_finding(str(key)))
        if finding is None:
            raise where.error(f"masks.lesions.{key}", f"not one of the findings ({', '.join(findings)})")
        out[finding] = _source(where, source, f"masks.lesions.{key}")
    return out


def _is_source(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and bool(value) and set(value) <= _SOURCE_KEYS)


def _source(where: _Where, value: Any, key: str) -> MaskSource:
    if isinstance(value, str):
        return MaskSource(folder=where.folder(value, key))
    if not _is_source(value):
        raise where.error(key, f"expected a folder or {{folder: DIR, column: NAME}}, got {value!r}")
    folder = where.folder(value["folder"], f"{key}.folder") if value.get("folder") is not None else None
    column = value.get("column")
    if column is not None and (not isinstance(column, str) or not column.strip()):
        raise where.error(f"{key}.column", f"expected a CSV column name, got {column!r}")
    if folder is None and column is None:
        raise where.error(key, "give a folder, a column, or both")
    return MaskSource(folder=folder, column=column)
