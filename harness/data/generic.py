"""``generic``: a team's own images, labels and masks, declared in a few lines of YAML.

``load_dataset("generic", "test", config="my_data.yaml", size=224)`` reads a folder of images
(PNG, JPEG; DICOM with ``pydicom``), a CSV of labels (one finding = binary, several = multi-label;
optional patient, split and metadata columns) and optional mask folders (lesions, lungs, named
artifacts), matched to the images by file stem. The schema: ``docs/datasets.md`` and
:mod:`harness.data.generic_spec`; row checks: :mod:`harness.data.generic_rows`.

Images are decoded lazily (when a split is first asked for), in a thread pool, to uint8 at the
requested size, and cached in the dataset cache under a key that changes with the YAML, the CSV
and the image and mask files (names, sizes, modification times).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from harness.data import DATASETS, list_datasets, register_dataset
from harness.data.cache import file_sha256
from harness.data.files import cached, files_fingerprint, load_gray, resize_mask, seeded_subset
from harness.data.generic_rows import DatasetRowsError, Rows, read_rows
from harness.data.generic_spec import SPLIT_VALUES, DatasetSpecError, GenericSpec, read_spec
from harness.data.imageset import ImageSet, empty_masks
from harness.data.splits import patient_splits

VERSION = "generic/1"  # bump when the loader reads the same files differently (checkpoint keys use it)
DATASET = "generic"
MAX_WORKERS = 8


def fingerprint(*, config: str | None = None, **_: object) -> str | None:
    """What a model trained on this dataset was fitted to: the YAML and label CSV (whole) and every image
    and mask file (name, size, mtime). Checkpoint keys include it, so edited labels or replaced images
    train the model again instead of judging weights fitted to the old files."""
    if config is None:
        return None
    spec = read_spec(config)
    rows = read_rows(spec)
    files = list(rows.images) + [p for paths in rows.masks.values() for p in paths if p is not None]
    return files_fingerprint([spec.path, spec.labels], files)


@register_dataset(DATASET, category="real", description="your own images, labels and masks, declared in a YAML "
                                                         "file (option config=PATH; see docs/datasets.md)",
                  fingerprint=fingerprint)
def generic(
    split: str,
    *,
    config: str | None = None,
    size: int = 224,
    max_images: int | None = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | None = None,
    workers: int | None = None,
) -> ImageSet:
    """One split of the dataset declared in the YAML file ``config``.

    Args:
        split: ``"test"`` (a pure test set has only this one), ``"train"``, ``"val"`` or
            ``"test_decorrelated"`` where the YAML's split rule provides them.
        config: path of the dataset YAML.
        size: output edge in pixels (images are resized to a square, without cropping).
        max_images: keep a seeded random subset of at most this many images of the split.
        seed: seed of ``max_images`` (the patient split has its own seed in the YAML).
        cache, cache_dir: keep the decoded split in the dataset cache.
        workers: threads decoding images (default: up to 8, one per CPU).

    Returns:
        The ImageSet: binary (labels int64 ``[N]``) for one finding, multi-label (float32 ``[N,K]``)
        for several; ``image_ids`` = the id column; ``metadata`` from the YAML's columns.

    Raises:
        DatasetSpecError: the YAML is malformed or names what does not exist.
        DatasetRowsError: bad rows (all listed); ImportError: a DICOM file without pydicom.
    """
    if config is None:
        raise DatasetSpecError(f"{DATASET}: pass config=<path of the dataset YAML> (see docs/datasets.md)")
    spec = read_spec(config)
    rows = read_rows(spec)
    available = available_splits(spec, rows)
    index = split_rows(spec, rows, split, available)
    index = index[seeded_subset(len(index), max_images, seed)]
    key = {"dataset": DATASET, "version": VERSION, "spec": spec.to_dict(), "yaml_sha256": file_sha256(spec.path),
           "split": split, "size": int(size), "max_images": max_images, "seed": int(seed), "splits": available,
           "metadata_codes": rows.metadata_codes}
    files = [rows.images[i] for i in index] + [p for paths in rows.masks.values() for i in index
                                               if (p := paths[i]) is not None]
    build = lambda: build_imageset(spec, rows, index, key, workers)  # noqa: E731
    return cached(key, files_fingerprint([spec.path, spec.labels], files), build, cache_dir) if cache else build()


def available_splits(spec: GenericSpec, rows: Rows) -> list[str]:
    """The splits this dataset can give, in the usual order."""
    if spec.split.mode == "test":
        return ["test"]
    if spec.split.mode == "patients":
        return ["train", "val", "test"]
    return [s for s in SPLIT_VALUES if s in set(rows.splits)]


def split_rows(spec: GenericSpec, rows: Rows, split: str, available: list[str]) -> np.ndarray:
    """Row indices of ``split`` (CSV order)."""
    if split not in available:
        hint = {"test": " (a pure test set: split: test, the default; to train on it, give a split column or "
                        "split: {patients: [0.7, 0.15, 0.15], seed: 0})",
                "patients": "", "column": f" (column {spec.split.column!r} holds no {split!r} row)"}[spec.split.mode]
        raise DatasetSpecError(f"{spec.path}: dataset {spec.name!r} has no split {split!r}; its splits: "
                               f"{', '.join(available)}{hint}")
    if spec.split.mode == "test":
        return np.arange(len(rows))
    if spec.split.mode == "column":
        return np.array([i for i, s in enumerate(rows.splits) if s == split], dtype=np.int64)
    patients = np.unique(rows.patient_ids)
    if patients.size < 3:
        raise DatasetSpecError(f"{spec.path}: a patient split needs at least 3 patients, {spec.labels.name} has "
                               f"{patients.size}")
    chosen = patients[_patient_cut(patients.size, spec.split.fractions, spec.split.seed)[split]]
    return np.nonzero(np.isin(rows.patient_ids, chosen))[0]


def _patient_cut(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Positions (into the sorted distinct patients) of each split: a seeded cut at ``fractions``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4001]))
    if fractions == (0.70, 0.15, 0.15):
        return {k: v for k, v in patient_splits(n, rng).items() if k != "test_decorrelated"}
    order = rng.permutation(n)
    cuts = np.round(np.cumsum(fractions[:2]) * n).astype(int)
    return {name: np.sort(part) for name, part in zip(("train", "val", "test"), np.split(order, cuts))}


def build_imageset(spec: GenericSpec, rows: Rows, index: np.ndarray, config: dict,
                   workers: int | None = None) -> ImageSet:
    """Decode the images and masks of rows ``index`` in a thread pool; every unreadable file is listed."""
    size, n, k = config["size"], len(index), len(spec.findings)
    if n == 0:
        raise DatasetSpecError(f"{spec.path}: split {config['split']!r} holds no image")
    images = np.zeros((n, 1, size, size), dtype=np.uint8)
    masks = {name: np.zeros((n, 1, size, size), dtype=bool) for name in rows.masks}
    workers = workers or min(MAX_WORKERS, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda j: _read_row(spec, rows, int(index[j]), size), range(n)))
    errors = [e for _, _, problems in results for e in problems]
    if errors:
        n_rows = sum(1 for _, _, problems in results if problems)
        raise DatasetRowsError(spec, errors, n_rows, stage=" (reading the files)")
    for j, (pixels, row_masks, _) in enumerate(results):
        images[j, 0] = pixels
        for name, mask in row_masks.items():
            masks[name][j, 0] = mask
    lesion = empty_masks(n, k, size)
    if spec.lesions:
        lesion = torch.zeros((n, k, size, size), dtype=torch.bool)
        for c, finding in enumerate(spec.findings):
            if f"lesion:{finding}" in masks:
                lesion[:, c] = torch.from_numpy(masks[f"lesion:{finding}"][:, 0])
    labels = torch.from_numpy(rows.labels[index])
    return ImageSet(
        images=torch.from_numpy(images),
        labels=labels[:, 0].round().long() if k == 1 else labels,
        lesion_masks=lesion,
        lung_masks=torch.from_numpy(masks["lungs"]) if "lungs" in masks else None,
        artifact_masks={name.split(":", 1)[1]: torch.from_numpy(m) for name, m in masks.items()
                        if name.startswith("artifact:")},
        patient_ids=torch.from_numpy(rows.patient_ids[index]),
        name=f"{spec.name}/{config['split']}",
        config=config,
        finding_names=spec.finding_names,
        metadata={name: torch.from_numpy(values[index]) for name, values in rows.metadata.items()},
        image_ids=tuple(rows.ids[i] for i in index),
    )


def _read_row(spec: GenericSpec, rows: Rows, i: int, size: int) -> tuple[np.ndarray, dict[str, np.ndarray], list]:
    """Row ``i``'s image and masks at ``size``, and what is wrong with its files."""
    where = f"{spec.labels.name}, line {rows.lines[i]} (image {rows.ids[i]!r})"
    pixels, original = np.zeros((size, size), dtype=np.uint8), None
    try:
        pixels, original = load_gray(rows.images[i], size)
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001  (name the file whatever PIL raised)
        return pixels, {}, [f"{where}: unreadable image {rows.images[i]} ({type(error).__name__}: {error})"]
    out, problems = {}, []
    for name, paths in rows.masks.items():
        mask = np.zeros((size, size), dtype=bool)
        if paths[i] is not None:
            mask, problem = _read_mask(paths[i], original, size)
            if problem:
                problems.append(f"{where}: {name.replace(':', ' ')} mask {paths[i]}: {problem}")
            elif name.startswith("lesion:") and mask.any() and _label(spec, rows, i, name) == 0:
                problems.append(f"{where}: {name.replace(':', ' ')} mask {paths[i].name} is not empty, but the "
                                f"label of {name.split(':', 1)[1]!r} is 0")
        out[name] = mask
    return pixels, out, problems


def _label(spec: GenericSpec, rows: Rows, i: int, name: str) -> float:
    return float(rows.labels[i, spec.findings.index(name.split(":", 1)[1])])


def _read_mask(path: Path, original: tuple[int, int], size: int) -> tuple[np.ndarray, str]:
    """bool ``[size, size]`` (any non-zero pixel is inside), or an empty mask and what is wrong."""
    from PIL import Image

    empty = np.zeros((size, size), dtype=bool)
    try:
        with Image.open(path) as image:
            image.load()
            plain = image if image.mode in ("1", "L", "I", "I;16", "F") else image.convert("L")
            values = np.asarray(plain)
    except Exception as error:  # noqa: BLE001
        return empty, f"unreadable ({type(error).__name__}: {error})"
    if (values.shape[1], values.shape[0]) != original:
        return empty, (f"is {values.shape[1]}x{values.shape[0]} pixels, its image {original[0]}x{original[1]}; "
                       "a mask must have its image's size")
    return resize_mask(values > 0, size), ""


def dataset_choice(value: str) -> dict:
    """``--dataset NAME|PATH.yaml`` as a manifest's ``dataset`` entry ``{"name", "options"}``.

    A path ending in ``.yaml``/``.yml`` (or an existing file) is a generic dataset, checked here
    row by row; anything else must be a registered dataset name.

    Raises:
        DatasetSpecError: a bad YAML or bad rows; UnknownNameError: an unknown name (the known ones listed).
    """
    if value.lower().endswith((".yaml", ".yml")) or Path(value).expanduser().is_file():
        spec = read_spec(value)
        read_rows(spec)
        return {"name": DATASET, "options": {"config": str(spec.path)}}
    list_datasets()
    DATASETS.get(value)
    return {"name": value, "options": {}}
