"""NIH ChestX-ray14 from its release files: 14 pathologies multi-hot, age/sex/view, optional box masks.

Expected in ``root`` (as released by the NIH Clinical Center):

- ``Data_Entry_2017_v2020.csv`` (or ``Data_Entry_2017.csv``): ``Image Index``, ``Finding Labels``
  (``|``-separated, or ``No Finding``), ``Follow-up #``, ``Patient ID``, ``Patient Age``,
  ``Patient Gender``, ``View Position``, ``OriginalImage[Width``, ``Height]``, ...;
- the PNGs anywhere below ``root`` (``images_001/images/*.png`` ... or one ``images/`` folder);
- ``train_val_list.txt`` and ``test_list.txt``: the official patient-wise split;
- optionally ``BBox_List_2017.csv``: ``Image Index``, ``Finding Label``, then ``x, y, w, h`` in
  pixels of the 1024x1024 PNG (its header reads ``Bbox [x,y,w,h]`` and ends in empty columns), for
  984 boxes on 880 images. Boxes become rectangle masks in their finding's channel.

Unlike torchxrayvision's defaults (PA only, which keeps 125 of the 880 box images), every view and
patient is kept unless ``views`` says otherwise.
"""

from __future__ import annotations

import csv
import gzip
import logging
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from harness.data import register_dataset
from harness.data.files import (
    box_mask,
    cached,
    dataset_root,
    files_fingerprint,
    find_file,
    index_images,
    load_images,
    locate_images,
    read_csv,
    read_lines,
    seeded_subset,
)
from harness.data.imageset import (
    SEX_FEMALE,
    SEX_MALE,
    SEX_UNKNOWN,
    VIEW_AP,
    VIEW_PA,
    VIEW_UNKNOWN,
    ImageSet,
    empty_masks,
    normalise_finding,
)
from harness.data.splits import patient_splits

log = logging.getLogger(__name__)

VERSION = "nih-cxr14/1"  # bump when the loader reads the same files differently (checkpoint keys use it)
DATASET = "nih-cxr14"
PATHOLOGIES = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
FINDINGS = tuple(normalise_finding(p) for p in PATHOLOGIES)
NO_FINDING = "No Finding"
DATA_ENTRY_NAMES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")
BBOX_NAME = "BBox_List_2017.csv"
SPLIT_LISTS = {"train": "train_val_list.txt", "val": "train_val_list.txt", "test": "test_list.txt"}
COLUMNS = ("Image Index", "Finding Labels", "Patient ID", "Patient Age", "Patient Gender", "View Position")
BOX_ALIASES = {"infiltrate": "infiltration"}  # BBox_List_2017.csv says "Infiltrate"
MASK_BUDGET_BYTES = 1 << 30  # dense box masks above this are refused (boxes=True) or skipped (None)
SPLITS = ("train", "val", "test", "bbox", "all")


@register_dataset(DATASET, category="real", description="NIH ChestX-ray14 release files (14 findings, boxes)")
def nih_cxr14(
    split: str,
    *,
    root: str | None = None,
    size: int = 224,
    views: Sequence[str] | None = None,
    official_split: bool = True,
    val_fraction: float = 0.1,
    boxes: bool | None = None,
    max_images: int | None = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | None = None,
) -> ImageSet:
    """One split of NIH ChestX-ray14 as a multi-label ImageSet (labels float32 ``[N,14]``).

    Args:
        split: ``"train"``/``"val"`` (``train_val_list.txt`` cut patient-wise, ``val_fraction`` of
            its patients to val), ``"test"`` (``test_list.txt``), ``"bbox"`` (the images with a
            box, any view or list) or ``"all"``.
        root: folder holding the release files.
        size: output edge in pixels.
        views: keep only these ``View Position`` values (e.g. ``["PA"]``); ``None`` keeps all.
        official_split: ``False`` cuts train/val/test 70/15/15 by patient (seeded) instead of
            reading the split lists.
        val_fraction: share of train_val patients that form ``"val"``.
        boxes: box masks from ``BBox_List_2017.csv``: ``True`` requires them, ``False`` skips them,
            ``None`` uses them when the file exists and the dense masks fit in 1 GiB.
        max_images: keep a seeded random subset of at most this many images.
        seed: seed of the val cut and of ``max_images``.
        cache, cache_dir: keep the decoded split in the dataset cache (keyed by the files).

    Returns:
        The ImageSet, with ``metadata`` ``age``, ``sex``, ``view`` and ``follow_up`` and
        ``image_ids`` = the ``Image Index`` names.
    """
    if split not in SPLITS:
        raise ValueError(f"{DATASET}: unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    folder = dataset_root(root, DATASET)
    entry_file = find_file(folder, DATA_ENTRY_NAMES, DATASET, "the label file")
    rows = [parse_entry(line, row, entry_file.name) for line, row in read_csv(entry_file, COLUMNS, DATASET)]
    box_file = _box_file(folder, boxes)
    all_boxes = read_boxes(box_file) if box_file is not None else {}
    chosen = _select(folder, rows, split, views, official_split, val_fraction, set(all_boxes), seed)
    if split == "bbox" and box_file is None:
        raise FileNotFoundError(f"{DATASET}: split 'bbox' needs {BBOX_NAME} in {folder} (and boxes not False)")
    if not chosen:
        raise ValueError(f"{DATASET}: split {split!r} of {entry_file.name} holds no image (views={views})")
    chosen = [chosen[i] for i in seeded_subset(len(chosen), max_images, seed)]
    paths = locate_images(index_images(folder), [r["image"] for r in chosen], folder, DATASET)
    config = {
        "dataset": DATASET, "version": VERSION, "root": str(folder.resolve()), "split": split, "size": int(size),
        "views": None if views is None else sorted(views), "official_split": official_split,
        "val_fraction": float(val_fraction), "boxes": boxes, "max_images": max_images, "seed": int(seed),
    }
    build = lambda: _build(chosen, paths, all_boxes, config, required=boxes is True)  # noqa: E731
    if not cache:
        return build()
    sources = [entry_file] + ([box_file] if box_file is not None else [])
    return cached(config, files_fingerprint(sources, paths), build, cache_dir)


def parse_entry(line: int, row: dict[str, str], file_name: str) -> dict:
    """One row of the Data_Entry csv as ``image, labels (int [14]), patient, age, sex, view, follow_up``."""
    where = f"{DATASET}: {file_name}, line {line}"
    labels = np.zeros(len(FINDINGS), dtype=np.int64)
    for text in row["Finding Labels"].split("|"):
        text = text.strip()
        if text == NO_FINDING:
            continue
        name = normalise_finding(text)
        if name not in FINDINGS:
            raise ValueError(f"{where}, column 'Finding Labels': unknown label {text!r}; expected "
                             f"'{NO_FINDING}' or '|'-separated names of {list(PATHOLOGIES)}")
        labels[FINDINGS.index(name)] = 1
    return {
        "image": row["Image Index"],
        "labels": labels,
        "patient": _integer(row["Patient ID"], f"{where}, column 'Patient ID'"),
        "age": parse_age(row["Patient Age"], f"{where}, column 'Patient Age'"),
        "sex": {"M": SEX_MALE, "F": SEX_FEMALE}.get(row["Patient Gender"].upper(), SEX_UNKNOWN),
        "view": {"PA": VIEW_PA, "AP": VIEW_AP}.get(row["View Position"].upper(), VIEW_UNKNOWN),
        "view_name": row["View Position"].upper(),
        "follow_up": _integer(row.get("Follow-up #") or "0", f"{where}, column 'Follow-up #'"),
    }


def _integer(text: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where}: expected an integer, got {text!r}") from None


def parse_age(text: str, where: str) -> float:
    """Age in years from ``"57"`` (v2020 csv) or ``"057Y"``/``"006M"``/``"010D"`` (2017 csv); blank = NaN."""
    if not text:
        return float("nan")
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([YMDW]?)", text.strip().upper())
    if match is None:
        raise ValueError(f"{where}: expected an age in years such as '57' or '057Y', got {text!r}")
    per_year = {"": 1.0, "Y": 1.0, "M": 12.0, "W": 52.18, "D": 365.25}[match.group(2)]
    return float(match.group(1)) / per_year


def read_boxes(path: Path) -> dict[str, list[tuple[int, tuple[float, float, float, float]]]]:
    """``BBox_List_2017.csv`` as image -> ``[(finding channel, (x, y, w, h)), ...]``.

    The header is ``Image Index,Finding Label,Bbox [x,y,w,h],,,`` (the bracketed name spans four
    columns and three empty columns follow), so columns are read by position.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    boxes: dict[str, list] = {}
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [c.strip() for c in next(reader, [])]
        if header[:2] != ["Image Index", "Finding Label"] or len(header) < 3 or not header[2].startswith("Bbox"):
            raise ValueError(f"{DATASET}: {path.name} header must start 'Image Index,Finding Label,Bbox [x,y,w,h]', "
                             f"got {header[:6]}")
        for row in reader:
            if row and any(cell.strip() for cell in row):
                image, channel, box = _parse_box(row, path.name, reader.line_num)
                boxes.setdefault(image, []).append((channel, box))
    return boxes


def _parse_box(row: list[str], file_name: str, line: int) -> tuple[str, int, tuple[float, float, float, float]]:
    where = f"{DATASET}: {file_name}, line {line}"
    if len(row) < 6:
        raise ValueError(f"{where}: expected 'Image Index, Finding Label, x, y, w, h', got {row}")
    label = normalise_finding(row[1])
    label = BOX_ALIASES.get(label, label)
    if label not in FINDINGS:
        raise ValueError(f"{where}, column 'Finding Label': unknown finding {row[1]!r}; "
                         f"expected one of {list(PATHOLOGIES)}")
    try:
        box = tuple(float(v) for v in row[2:6])
    except ValueError:
        raise ValueError(f"{where}, columns 'Bbox [x', 'y', 'w', 'h]': expected numbers, got {row[2:6]}") from None
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"{where}: box width and height must be positive, got {box}")
    return row[0].strip(), FINDINGS.index(label), box  # type: ignore[return-value]


def _box_file(folder: Path, boxes: bool | None) -> Path | None:
    if boxes is False:
        return None
    try:
        return find_file(folder, (BBOX_NAME,), DATASET, "the box file (needed because boxes=True)")
    except FileNotFoundError:
        if boxes:
            raise
        return None


def _select(folder: Path, rows: list[dict], split: str, views, official: bool, val_fraction: float,
            boxed: set[str], seed: int) -> list[dict]:
    """The rows of ``split``, in csv order, after the view filter."""
    if views is not None:
        keep = {v.upper() for v in views}
        rows = [r for r in rows if r["view_name"] in keep]
    if split == "all":
        return rows
    if split == "bbox":
        return [r for r in rows if r["image"] in boxed]
    if not official:
        return _patient_split(rows, split, seed)
    hint = "; or pass official_split=False for a seeded patient-wise 70/15/15 split"
    listed = set(read_lines(find_file(folder, (SPLIT_LISTS[split],), DATASET, "the official split list", hint)))
    rows = [r for r in rows if r["image"] in listed]
    if split == "test":
        return rows
    patients = np.unique([r["patient"] for r in rows])
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1401]))
    n_val = int(round(val_fraction * patients.size))
    val = set(rng.permutation(patients)[:n_val].tolist())
    return [r for r in rows if (r["patient"] in val) == (split == "val")]


def _patient_split(rows: list[dict], split: str, seed: int) -> list[dict]:
    patients = np.unique([r["patient"] for r in rows])
    if patients.size < 3:
        raise ValueError(f"{DATASET}: official_split=False needs at least 3 patients, found {patients.size}")
    parts = patient_splits(patients.size, np.random.default_rng(np.random.SeedSequence([seed, 1402])))
    chosen = set(patients[parts[split]].tolist())
    return [r for r in rows if r["patient"] in chosen]


def _build(rows: list[dict], paths: list[Path], boxes: dict, config: dict, required: bool) -> ImageSet:
    size = config["size"]
    images, originals = load_images(paths, size, DATASET)
    return ImageSet(
        images=images,
        labels=torch.from_numpy(np.stack([r["labels"] for r in rows]).astype(np.float32).reshape(len(rows), -1)),
        lesion_masks=_box_masks(rows, originals, boxes, size, required),
        lung_masks=None,
        patient_ids=torch.tensor([r["patient"] for r in rows], dtype=torch.int64),
        name=f"{DATASET}/{config['split']}",
        config=config,
        finding_names=FINDINGS,
        metadata={
            "age": torch.tensor([r["age"] for r in rows], dtype=torch.float32),
            "sex": torch.tensor([r["sex"] for r in rows], dtype=torch.int64),
            "view": torch.tensor([r["view"] for r in rows], dtype=torch.int64),
            "follow_up": torch.tensor([r["follow_up"] for r in rows], dtype=torch.int64),
        },
        image_ids=tuple(r["image"] for r in rows),
    )


def _box_masks(rows: list[dict], originals: list, boxes: dict, size: int, required: bool) -> torch.Tensor:
    """bool ``[N,14,size,size]`` rectangles of the boxes of the chosen images (a broadcast view if none)."""
    n, k = len(rows), len(FINDINGS)
    boxed = [i for i, r in enumerate(rows) if r["image"] in boxes]
    if not boxed:
        return empty_masks(n, k, size)
    if n * k * size * size > MASK_BUDGET_BYTES:
        message = (f"{DATASET}: dense box masks for {n} images at {size}px would take "
                   f"{n * k * size * size / 2**30:.1f} GiB; use split='bbox', max_images or a smaller size")
        if required:
            raise MemoryError(message)
        log.warning("%s; returning the split without box masks (boxes=False silences this)", message)
        return empty_masks(n, k, size)
    masks = torch.zeros((n, k, size, size), dtype=torch.bool)
    for i in boxed:
        for channel, box in boxes[rows[i]["image"]]:
            masks[i, channel] |= torch.from_numpy(box_mask([box], originals[i], size))
    return masks
