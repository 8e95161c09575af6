"""CheXpert from its release files: 14 observations with an uncertainty policy, age/sex/view.

Expected in ``root``: ``train.csv`` and ``valid.csv`` with columns ``Path, Sex, Age,
Frontal/Lateral, AP/PA`` and the 14 observations (``No Finding`` ... ``Support Devices``), each
``1.0`` (positive), ``0.0`` (negative), ``-1.0`` (uncertain) or blank (not mentioned, read as 0);
the JPGs (or PNGs) at ``Path``, which starts with the release folder
(``CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg``), so ``root`` may be that
folder or its parent.

Splits: ``"train"``/``"val"`` cut ``train.csv`` by patient (``val_fraction`` of the patients to
val, seeded); ``"test"`` is ``valid.csv`` (the 234 radiologist-labelled studies that papers,
CheXtransfer included, report on). CheXlocalize calls "Lung Opacity" "Airspace Opacity":
``finding_index("Airspace Opacity")`` finds it (see :data:`harness.data.imageset.FINDING_ALIASES`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from harness.data import register_dataset
from harness.data.files import cached, dataset_root, files_fingerprint, find_file, load_images, read_csv, seeded_subset
from harness.data.imageset import (
    SEX_FEMALE,
    SEX_MALE,
    SEX_UNKNOWN,
    VIEW_AP,
    VIEW_LATERAL,
    VIEW_PA,
    VIEW_UNKNOWN,
    ImageSet,
    empty_masks,
    normalise_finding,
)

VERSION = "chexpert/1"  # bump when the loader reads the same files differently (checkpoint keys use it)
DATASET = "chexpert"
OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
FINDINGS = tuple(normalise_finding(o) for o in OBSERVATIONS)
COLUMNS = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *OBSERVATIONS)
RELEASE_FOLDERS = ("CheXpert-v1.0-small", "CheXpert-v1.0")
SPLIT_FILES = {"train": "train.csv", "val": "train.csv", "test": "valid.csv"}
UNCERTAINTY = {"zeros": 0.0, "ones": 1.0, "ignore": float("nan")}  # what -1.0 becomes
VALUES = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "": 0.0}


@register_dataset(DATASET, category="real", description="CheXpert release files (14 observations, uncertainty)")
def chexpert(
    split: str,
    *,
    root: str | None = None,
    size: int = 224,
    uncertainty: str = "zeros",
    frontal_only: bool = False,
    val_fraction: float = 0.1,
    max_images: int | None = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | None = None,
) -> ImageSet:
    """One split of CheXpert as a multi-label ImageSet (labels float32 ``[N,14]``, no masks).

    Args:
        split: ``"train"``, ``"val"`` (both from ``train.csv``) or ``"test"`` (``valid.csv``).
        root: the release folder or its parent.
        size: output edge in pixels.
        uncertainty: what an uncertain label (``-1.0``) becomes: ``"zeros"`` (U-Zeros),
            ``"ones"`` (U-Ones) or ``"ignore"`` (NaN, to be masked out of losses and metrics).
        frontal_only: drop lateral views.
        val_fraction: share of ``train.csv`` patients that form ``"val"``.
        max_images: keep a seeded random subset of at most this many images.
        seed: seed of the val cut and of ``max_images``.
        cache, cache_dir: keep the decoded split in the dataset cache (keyed by the files).

    Returns:
        The ImageSet, with ``metadata`` ``age``, ``sex``, ``view`` and ``image_ids`` = ``Path``.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"{DATASET}: unknown split {split!r}; valid splits: {', '.join(SPLIT_FILES)}")
    if uncertainty not in UNCERTAINTY:
        raise ValueError(f"{DATASET}: uncertainty must be one of {list(UNCERTAINTY)}, got {uncertainty!r}")
    folder = release_folder(dataset_root(root, DATASET), SPLIT_FILES[split])
    csv_file = find_file(folder, (SPLIT_FILES[split],), DATASET, f"the label file of split {split!r}",
                         f" (also looked in {', '.join(RELEASE_FOLDERS)} below it)")
    rows = [parse_row(line, row, csv_file.name, uncertainty) for line, row in read_csv(csv_file, COLUMNS, DATASET)]
    if frontal_only:
        rows = [r for r in rows if r["view"] != VIEW_LATERAL]
    if split != "test":
        rows = _patient_cut(rows, split, val_fraction, seed)
    if not rows:
        raise ValueError(f"{DATASET}: split {split!r} of {csv_file.name} holds no image (frontal_only={frontal_only})")
    rows = [rows[i] for i in seeded_subset(len(rows), max_images, seed)]
    paths = [resolve_image(folder, r["path"], csv_file.name, r["line"]) for r in rows]
    config = {"dataset": DATASET, "version": VERSION, "root": str(folder.resolve()), "split": split, "size": int(size),
              "uncertainty": uncertainty, "frontal_only": frontal_only, "val_fraction": float(val_fraction),
              "max_images": max_images, "seed": int(seed)}
    build = lambda: _build(rows, paths, config)  # noqa: E731
    return cached(config, files_fingerprint([csv_file], paths), build, cache_dir) if cache else build()


def release_folder(root: Path, csv_name: str) -> Path:
    """``root`` if it holds ``csv_name``, else its release subfolder that does (else ``root``)."""
    for folder in (root, *(root / name for name in RELEASE_FOLDERS)):
        if (folder / csv_name).is_file() or (folder / f"{csv_name}.gz").is_file():
            return folder
    return root


def parse_row(line: int, row: dict[str, str], file_name: str, uncertainty: str) -> dict:
    """One csv row as ``path, labels (float [14]), patient, age, sex, view``."""
    where = f"{DATASET}: {file_name}, line {line}"
    labels = np.zeros(len(OBSERVATIONS), dtype=np.float32)
    for k, column in enumerate(OBSERVATIONS):
        text = row[column]
        if text in ("-1.0", "-1"):
            labels[k] = UNCERTAINTY[uncertainty]
        elif text in VALUES:
            labels[k] = VALUES[text]
        else:
            raise ValueError(f"{where}, column {column!r}: expected 1.0, 0.0, -1.0 or blank, got {text!r}")
    try:
        age = float(row["Age"]) if row["Age"] else float("nan")
    except ValueError:
        raise ValueError(f"{where}, column 'Age': expected a number of years, got {row['Age']!r}") from None
    return {
        "line": line,
        "path": row["Path"],
        "labels": labels,
        "patient": _patient_id(row["Path"]),
        "age": age,
        "sex": {"male": SEX_MALE, "female": SEX_FEMALE}.get(row["Sex"].lower(), SEX_UNKNOWN),
        "view": _view(row["Frontal/Lateral"], row["AP/PA"]),
    }


def _patient_id(path: str) -> int:
    match = re.search(r"patient(\d+)", path)
    return int(match.group(1)) if match else -1


def _view(frontal_lateral: str, ap_pa: str) -> int:
    if frontal_lateral.lower() == "lateral":
        return VIEW_LATERAL
    return {"PA": VIEW_PA, "AP": VIEW_AP}.get(ap_pa.upper(), VIEW_UNKNOWN)


def resolve_image(folder: Path, relative: str, file_name: str, line: int) -> Path:
    """The image at csv ``Path``: below ``folder``, below its parent, or without the leading release folder."""
    parts = Path(relative).parts
    candidates = [folder / relative, folder.parent / relative]
    if len(parts) > 1:
        candidates.append(folder.joinpath(*parts[1:]))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{DATASET}: {file_name}, line {line}, column 'Path': image {relative!r} not found "
                            f"below {folder} or its parent")


def _patient_cut(rows: list[dict], split: str, val_fraction: float, seed: int) -> list[dict]:
    patients = np.unique([r["patient"] for r in rows])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3001]))
    val = set(rng.permutation(patients)[: int(round(val_fraction * patients.size))].tolist())
    return [r for r in rows if (r["patient"] in val) == (split == "val")]


def _build(rows: list[dict], paths: list[Path], config: dict) -> ImageSet:
    size = config["size"]
    images, _ = load_images(paths, size, DATASET)
    return ImageSet(
        images=images,
        labels=torch.from_numpy(np.stack([r["labels"] for r in rows])),
        lesion_masks=empty_masks(len(rows), len(FINDINGS), size),
        lung_masks=None,
        patient_ids=torch.tensor([r["patient"] for r in rows], dtype=torch.int64),
        name=f"{DATASET}/{config['split']}",
        config=config,
        finding_names=FINDINGS,
        metadata={
            "age": torch.tensor([r["age"] for r in rows], dtype=torch.float32),
            "sex": torch.tensor([r["sex"] for r in rows], dtype=torch.int64),
            "view": torch.tensor([r["view"] for r in rows], dtype=torch.int64),
        },
        image_ids=tuple(r["path"] for r in rows),
    )
