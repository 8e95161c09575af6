"""SIIM-ACR loader on tiny files in the release format: leading-space header, '-1', OR-merged rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import load_dataset
from harness.data.rle import rle_encode
from harness.data.siim_acr import siim_acr

IDS = [f"1.2.276.0.7230010.3.1.4.8323329.{1000 + k}.1517875162.{k}" for k in range(12)]


def rect(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    mask = np.zeros((1024, 1024), dtype=bool)
    mask[r0:r1, c0:c1] = True
    return mask


# image index -> list of masks (one csv row each); absent = a single '-1' row
POSITIVE = {
    1: [rect(0, 512, 0, 256), rect(256, 768, 128, 512)],  # two overlapping rows: OR-merge
    4: [rect(512, 1024, 768, 1024)],
    7: [rect(100, 110, 100, 110)],  # 10x10 px: smaller than one output pixel at 32
    9: [rect(0, 1024, 0, 64), rect(0, 64, 0, 1024), rect(960, 1024, 0, 1024)],
}


def write_release(root: Path, *, name: str = "train-rle.csv", header: str = "ImageId, EncodedPixels") -> Path:
    (root / "png").mkdir(parents=True, exist_ok=True)
    lines = [header]
    for k, image_id in enumerate(IDS):
        lines += [f"{image_id}, {rle_encode(m)}" for m in POSITIVE.get(k, [])] or [f"{image_id}, -1"]
        Image.fromarray(np.full((256, 256), 10 * k, dtype=np.uint8), mode="L").save(root / "png" / f"{image_id}.png")
    (root / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def root(tmp_path) -> Path:
    return write_release(tmp_path / "siim")


def load_all(root: Path, **options) -> dict:
    return {s: siim_acr(s, root=str(root), size=32, cache=False, **options) for s in ("train", "val", "test")}


def test_splits_cover_every_image_once_with_labels_from_rle(root) -> None:
    parts = load_all(root)
    ids = [i for d in parts.values() for i in d.image_ids]
    assert sorted(ids) == sorted(IDS)
    patients = [set(d.patient_ids.tolist()) for d in parts.values()]
    assert not (patients[0] & patients[1] or patients[0] & patients[2] or patients[1] & patients[2])
    for data in parts.values():
        assert not data.multilabel and data.finding_names == ("pneumothorax",) and data.lung_masks is None
        assert data.lesion_masks.shape == (len(data), 1, 32, 32)
        for row, image_id in enumerate(data.image_ids):
            k = IDS.index(image_id)
            assert int(data.labels[row]) == (k in POSITIVE)
            assert bool(data.lesion_masks[row].any()) == (k in POSITIVE)
            assert int(data.images[row].float().mean().round()) == 10 * k


def test_rows_of_one_image_are_or_merged_and_resized(root) -> None:
    data = next(d for d in load_all(root).values() if IDS[1] in d.image_ids)
    mask = data.lesion_masks[data.image_ids.index(IDS[1]), 0]
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[0:16, 0:8] = True  # first row, in 1024/32 = 32 px blocks
    expected[8:24, 4:16] = True  # second row
    assert torch.equal(mask, expected)  # the union, not the last row only


def test_tiny_lesion_keeps_one_pixel(root) -> None:
    data = next(d for d in load_all(root).values() if IDS[7] in d.image_ids)
    mask = data.lesion_masks[data.image_ids.index(IDS[7]), 0]
    assert int(mask.sum()) == 1 and bool(mask[3, 3])


def test_header_without_space_and_registry(tmp_path) -> None:
    root = write_release(tmp_path / "s2", name="stage_2_train.csv", header="ImageId,EncodedPixels")
    data = load_dataset("siim-acr", "train", root=str(root), size=16, cache_dir=str(tmp_path / "cache"))
    assert data.images.shape[1:] == (1, 16, 16) and data.name == "siim-acr/train"
    again = load_dataset("siim-acr", "train", root=str(root), size=16, cache_dir=str(tmp_path / "cache"))
    assert torch.equal(again.lesion_masks, data.lesion_masks) and again.image_ids == data.image_ids


def test_balanced_and_max_images(root) -> None:
    full = siim_acr("train", root=str(root), size=16, cache=False)
    balanced = siim_acr("train", root=str(root), size=16, balanced=True, cache=False)
    positives = int(full.labels.sum())
    assert int(balanced.labels.sum()) == positives and len(balanced) == min(2 * positives, len(full))
    assert len(siim_acr("train", root=str(root), size=16, max_images=2, cache=False)) == 2


def test_malformed_rle_names_file_and_line(root) -> None:
    csv = root / "train-rle.csv"
    lines = csv.read_text().splitlines()
    lines[3] = f"{IDS[2]}, 10 20 30"  # odd count
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train-rle.csv, line 4, column 'EncodedPixels': malformed RLE"):
        siim_acr("train", root=str(root), cache=False)
    lines[3] = f"{IDS[2]}, 1048570 20"  # well-formed but runs past the 1024x1024 frame
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"train-rle.csv, line 4, column 'EncodedPixels': RLE runs past"):
        load_all(root)


def test_missing_column_file_and_image(tmp_path, root) -> None:
    (root / "train-rle.csv").write_text("ImageId, Pixels\nx, -1\n")
    with pytest.raises(ValueError, match=r"train-rle.csv lacks column\(s\) \['EncodedPixels'\]"):
        siim_acr("train", root=str(root), cache=False)
    with pytest.raises(FileNotFoundError, match="train-rle.csv"):
        siim_acr("train", root=str(tmp_path))
    root = write_release(tmp_path / "again")
    for path in (root / "png").glob("*.png"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match="image\\(s\\) listed in the csv are not below"):
        siim_acr("train", root=str(root), cache=False)


@pytest.mark.skipif(importlib.util.find_spec("pydicom") is not None, reason="pydicom is installed")
def test_dicom_needs_pydicom(tmp_path) -> None:
    root = write_release(tmp_path / "dcm")
    for path in (root / "png").glob("*.png"):
        path.with_suffix(".dcm").write_bytes(b"DICM")
        path.unlink()
    with pytest.raises(ImportError, match="pip install pydicom"):
        load_all(root)


def test_real_release_csv_parses() -> None:
    """The real train-rle csv (in torchxrayvision): every RLE is well-formed, rows grouped per image."""
    from harness.data.lesions import siim_csv_path
    from harness.data.siim_acr import read_rle_csv

    groups = read_rle_csv(siim_csv_path())
    assert len(groups) == 12_047
    assert sum(bool(rows) for rows in groups.values()) == 2_669
    assert sum(len(rows) > 1 for rows in groups.values()) == 624
