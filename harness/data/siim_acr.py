"""SIIM-ACR pneumothorax from its release files: binary labels and OR-merged RLE masks.

Expected in ``root``:

- ``train-rle.csv`` (or ``stage_2_train.csv``): header ``ImageId, EncodedPixels`` (the second name
  has a leading space in the original release), one row per annotated component, ``-1`` for an
  image without pneumothorax. RLE is relative-offset, column-major over the 1024x1024 frame
  (:mod:`harness.data.rle`); the rows of one image are OR-merged (torchxrayvision keeps the last);
- the images anywhere below ``root`` named ``<ImageId>.png`` (or ``.jpg``), or the original
  ``<ImageId>.dcm`` files, which need ``pydicom``.

The csv has no patient ids, so each image counts as its own patient and the split is a seeded
70/15/15 cut of the images (:func:`harness.data.splits.patient_splits`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from harness.data import register_dataset
from harness.data.files import (
    cached,
    dataset_root,
    files_fingerprint,
    find_file,
    index_images,
    load_images,
    locate_images,
    read_csv,
    resize_mask,
    seeded_subset,
)
from harness.data.imageset import ImageSet
from harness.data.rle import NO_FINDING, SIIM_SIZE, rle_decode, rle_merge
from harness.data.splits import MAIN_SPLITS, patient_splits

VERSION = "siim-acr/1"  # bump when the loader reads the same files differently (checkpoint keys use it)
DATASET = "siim-acr"
CSV_NAMES = ("train-rle.csv", "stage_2_train.csv")
COLUMNS = ("ImageId", "EncodedPixels")
FINDINGS = ("pneumothorax",)


@register_dataset(DATASET, category="real", description="SIIM-ACR pneumothorax release files (RLE masks)")
def siim_acr(
    split: str,
    *,
    root: str | None = None,
    size: int = 224,
    balanced: bool = False,
    max_images: int | None = None,
    seed: int = 0,
    cache: bool = True,
    cache_dir: str | None = None,
) -> ImageSet:
    """One split of SIIM-ACR as a binary ImageSet (labels int64 ``[N]``, masks ``[N,1,H,W]``).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (seeded 70/15/15 cut of the images).
        root: folder holding the csv and the images.
        size: output edge in pixels.
        balanced: keep as many negatives as positives in the split (study 000's balanced subset),
            a seeded draw.
        max_images: keep a seeded random subset of at most this many images.
        seed: seed of the split, the balancing and ``max_images``.
        cache, cache_dir: keep the decoded split in the dataset cache (keyed by the files).

    Returns:
        The ImageSet, ``image_ids`` = the ``ImageId`` values.
    """
    if split not in MAIN_SPLITS:
        raise ValueError(f"{DATASET}: unknown split {split!r}; valid splits: {', '.join(MAIN_SPLITS)}")
    folder = dataset_root(root, DATASET)
    csv_file = find_file(folder, CSV_NAMES, DATASET, "the RLE label file")
    groups = read_rle_csv(csv_file)
    ids = _select(list(groups), groups, split, balanced, seed)
    ids = [ids[i] for i in seeded_subset(len(ids), max_images, seed)]
    paths = locate_images(index_images(folder), ids, folder, DATASET)
    config = {"dataset": DATASET, "version": VERSION, "root": str(folder.resolve()), "split": split, "size": int(size),
              "balanced": balanced, "max_images": max_images, "seed": int(seed)}
    build = lambda: _build(ids, paths, groups, csv_file.name, config)  # noqa: E731
    return cached(config, files_fingerprint([csv_file], paths), build, cache_dir) if cache else build()


def read_rle_csv(path: Path) -> "OrderedDict[str, list[tuple[int, str]]]":
    """ImageId -> ``[(line, rle), ...]`` of its positive rows (empty list = no pneumothorax), in file order.

    Raises:
        ValueError: a malformed RLE (not integer ``start length`` pairs), naming the file and line.
    """
    groups: OrderedDict[str, list[tuple[int, str]]] = OrderedDict()
    for line, row in read_csv(path, COLUMNS, DATASET):
        rle = row["EncodedPixels"]
        rows = groups.setdefault(row["ImageId"], [])
        if rle in ("", NO_FINDING):
            continue
        tokens = rle.split()
        if len(tokens) % 2 or not all(t.isdigit() for t in tokens):
            raise ValueError(f"{DATASET}: {path.name}, line {line}, column 'EncodedPixels': malformed RLE "
                             f"{rle[:40]!r}; expected '-1' or space-separated non-negative 'start length' pairs")
        rows.append((line, rle))
    return groups


def _select(ids: list[str], groups: dict, split: str, balanced: bool, seed: int) -> list[str]:
    parts = patient_splits(len(ids), np.random.default_rng(np.random.SeedSequence([seed, 2001])))
    chosen = [ids[i] for i in parts[split]]
    if balanced:
        positive = [i for i in chosen if groups[i]]
        negative = [i for i in chosen if not groups[i]]
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2002]))
        keep = set(rng.permutation(len(negative))[: len(positive)].tolist())
        kept = {negative[j] for j in keep} | set(positive)
        chosen = [i for i in chosen if i in kept]
    return chosen


def decode_rows(rows: list[tuple[int, str]], file_name: str) -> np.ndarray:
    """OR-merge the RLE rows of one image into a bool 1024x1024 mask; a bad row is named by line."""
    try:
        return rle_merge([rle for _, rle in rows], (SIIM_SIZE, SIIM_SIZE))
    except ValueError:
        for line, rle in rows:
            try:
                rle_decode(rle)
            except ValueError as error:
                raise ValueError(f"{DATASET}: {file_name}, line {line}, column 'EncodedPixels': {error}") from None
        raise


def _build(ids: list[str], paths: list[Path], groups: dict, file_name: str, config: dict) -> ImageSet:
    size = config["size"]
    position = {image_id: k for k, image_id in enumerate(groups)}
    images, _ = load_images(paths, size, DATASET)
    masks = torch.zeros((len(ids), 1, size, size), dtype=torch.bool)
    for i, image_id in enumerate(ids):
        if groups[image_id]:
            masks[i, 0] = torch.from_numpy(resize_mask(decode_rows(groups[image_id], file_name), size))
    return ImageSet(
        images=images,
        labels=torch.tensor([1 if groups[i] else 0 for i in ids], dtype=torch.int64),
        lesion_masks=masks,
        lung_masks=None,
        patient_ids=torch.tensor([position[i] for i in ids], dtype=torch.int64),  # csv order: unique across splits
        name=f"{DATASET}/{config['split']}",
        config=config,
        finding_names=FINDINGS,
        image_ids=tuple(ids),
    )
