"""PatchCamelyon (PCam) from its HDF5 files: 96x96 histopathology patches, tumour in the centre or not.

Expected in ``root``: ``camelyonpatch_level_2_split_{train,valid,test}_{x,y}.h5`` (decompressed;
the download is ``.h5.gz``), where ``x`` holds uint8 ``[N,96,96,3]`` RGB patches and ``y`` uint8
``[N,1,1,1]`` labels: 1 when the central 32x32 pixels contain tumour tissue. Reading them needs
``h5py`` (``pip install h5py``), which the harness does not depend on.

Patches are converted to grayscale (ITU-R 601 luma) and resized to ``size``, like every other
dataset here. There are no pixel masks (``lesion_masks`` all False); the label speaks about the
central 32x32 region only. The optional ``camelyonpatch_level_2_split_<split>_meta.csv`` names each
patch's slide (column ``wsi``); the slide becomes the patient id, else every patch is its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from harness.data import register_dataset
from harness.data.files import dataset_root, read_csv, resize_gray, seeded_subset
from harness.data.imageset import ImageSet, empty_masks

VERSION = "pcam/1"  # bump when the loader reads the same files differently (checkpoint keys use it)
DATASET = "pcam"
SPLIT_NAMES = {"train": "train", "val": "valid", "test": "test"}
FINDINGS = ("tumour",)
PATCH = 96
LUMA = np.array([0.299, 0.587, 0.114])


def pcam_files(root: Path, split: str) -> tuple[Path, Path]:
    """The ``(x, y)`` h5 files of ``split``; ``FileNotFoundError`` naming the missing one."""
    paths = []
    for part in ("x", "y"):
        path = root / f"camelyonpatch_level_2_split_{SPLIT_NAMES[split]}_{part}.h5"
        if not path.is_file():
            hint = f"; decompress {path.name}.gz first (gunzip)" if path.with_name(path.name + ".gz").is_file() else ""
            raise FileNotFoundError(f"{DATASET}: {path.name} not found in {root}{hint}")
        paths.append(path)
    return paths[0], paths[1]


def import_h5py():
    """The h5py module, or an ``ImportError`` saying how to install it."""
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "pcam: reading PCam's .h5 files needs h5py, which is not installed: pip install h5py"
        ) from None
    return h5py


@register_dataset(DATASET, category="real", description="PatchCamelyon h5 files (needs h5py)")
def pcam(
    split: str,
    *,
    root: str | None = None,
    size: int = 96,
    max_images: int | None = None,
    seed: int = 0,
) -> ImageSet:
    """One split of PCam as a binary ImageSet (labels int64 ``[N]``, finding ``"tumour"``).

    Args:
        split: ``"train"``, ``"val"`` (the ``valid`` files) or ``"test"``.
        root: folder holding the ``.h5`` files.
        size: output edge in pixels (96 = the patches' own size).
        max_images: keep a seeded random subset of at most this many patches.
        seed: seed of ``max_images``.

    Raises:
        ImportError: h5py is not installed (the message names ``pip install h5py``).
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"{DATASET}: unknown split {split!r}; valid splits: {', '.join(SPLIT_NAMES)}")
    folder = dataset_root(root, DATASET)
    x_file, y_file = pcam_files(folder, split)
    h5py = import_h5py()
    with h5py.File(x_file, "r") as xs, h5py.File(y_file, "r") as ys:
        _check_shapes(xs["x"], ys["y"], x_file, y_file)
        n = int(ys["y"].shape[0])
        rows = seeded_subset(n, max_images, seed)
        pick = slice(None) if rows.size == n else rows  # h5py: a slice reads fast, a list must be increasing
        patches = np.asarray(xs["x"][pick])
        labels = np.asarray(ys["y"][pick]).reshape(-1)
    config = {"dataset": DATASET, "version": VERSION, "root": str(folder.resolve()), "split": split, "size": int(size),
              "max_images": max_images, "seed": int(seed)}
    return ImageSet(
        images=torch.from_numpy(to_gray(patches, size))[:, None],
        labels=torch.from_numpy(labels.astype(np.int64)),
        lesion_masks=empty_masks(len(rows), 1, size),
        lung_masks=None,
        patient_ids=torch.from_numpy(_slides(folder, split, rows)),
        name=f"{DATASET}/{split}",
        config=config,
        finding_names=FINDINGS,
    )


def to_gray(patches: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[N,96,96,3]`` RGB -> uint8 ``[N,size,size]`` grayscale."""
    gray = np.round(patches.astype(np.float64) @ LUMA).clip(0, 255).astype(np.uint8)
    if size == gray.shape[-1]:
        return gray
    return np.stack([resize_gray(g, size) for g in gray]) if len(gray) else np.zeros((0, size, size), np.uint8)


def _check_shapes(x, y, x_file: Path, y_file: Path) -> None:
    if len(x.shape) != 4 or tuple(x.shape[1:]) != (PATCH, PATCH, 3):
        raise ValueError(f"{DATASET}: {x_file.name} dataset 'x' must be [N,96,96,3], got {tuple(x.shape)}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{DATASET}: {y_file.name} has {y.shape[0]} labels for {x.shape[0]} patches in {x_file.name}")


def _slides(folder: Path, split: str, rows: np.ndarray) -> np.ndarray:
    """int64 slide index of each chosen patch (from the meta csv), else the patch index."""
    meta = folder / f"camelyonpatch_level_2_split_{SPLIT_NAMES[split]}_meta.csv"
    if not meta.is_file():
        return rows.astype(np.int64)
    slides = [row["wsi"] for _, row in read_csv(meta, ("wsi",), DATASET)]
    codes = {name: k for k, name in enumerate(sorted(set(slides)))}
    return np.array([codes[slides[i]] for i in rows], dtype=np.int64)
