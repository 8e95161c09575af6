"""PCam loader: the h5py requirement is spelled out; the reading logic runs against a stand-in h5py."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data import load_dataset
from harness.data.pcam import pcam

NAMES = {part: f"camelyonpatch_level_2_split_valid_{part}.h5" for part in ("x", "y")}


def placeholders(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in NAMES.values():
        (root / name).write_bytes(b"\x89HDF\r\n\x1a\n")
    return root


@pytest.mark.skipif(importlib.util.find_spec("h5py") is not None, reason="h5py is installed")
def test_missing_h5py_is_named_with_the_fix(tmp_path) -> None:
    root = placeholders(tmp_path / "pcam")
    with pytest.raises(ImportError, match="pip install h5py"):
        pcam("val", root=str(root))


def test_missing_files_are_named(tmp_path) -> None:
    root = tmp_path / "pcam"
    root.mkdir()
    with pytest.raises(FileNotFoundError, match="camelyonpatch_level_2_split_test_x.h5 not found"):
        pcam("test", root=str(root))
    (root / "camelyonpatch_level_2_split_test_x.h5.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="gunzip"):
        pcam("test", root=str(root))
    with pytest.raises(ValueError, match="valid splits"):
        pcam("valid", root=str(root))


class FakeH5File(dict):
    """Just enough of ``h5py.File``: a context manager mapping dataset names to arrays."""

    store: dict[str, dict[str, np.ndarray]] = {}

    def __init__(self, path, mode="r"):
        super().__init__(self.store[Path(path).name])

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.fixture()
def fake_h5py(monkeypatch, tmp_path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 96, 96, 3), dtype=np.uint8)
    x[0] = [255, 0, 0]  # pure red: luma 0.299 * 255 = 76
    y = np.array([1, 0, 1, 1, 0, 0], dtype=np.uint8).reshape(6, 1, 1, 1)
    monkeypatch.setattr(FakeH5File, "store", {NAMES["x"]: {"x": x}, NAMES["y"]: {"y": y}})
    monkeypatch.setitem(sys.modules, "h5py", types.SimpleNamespace(File=FakeH5File))
    root = placeholders(tmp_path / "pcam")
    (root / "camelyonpatch_level_2_split_valid_meta.csv").write_text(
        ",coord_y,coord_x,tumor_patch,center_tumor_patch,wsi\n"
        + "".join(f"{k},0,0,False,False,{'tumor_011' if k < 3 else 'normal_002'}\n" for k in range(6))
    )
    return root


def test_reads_patches_as_gray_binary_imageset(fake_h5py) -> None:
    data = pcam("val", root=str(fake_h5py))
    assert data.name == "pcam/val" and not data.multilabel and data.finding_names == ("tumour",)
    assert data.images.shape == (6, 1, 96, 96) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [1, 0, 1, 1, 0, 0] and data.labels.dtype == torch.int64
    assert int(data.images[0, 0, 0, 0]) == 76
    assert data.patient_ids.tolist() == [1, 1, 1, 0, 0, 0]  # slides from the meta csv
    assert not data.lesion_masks.any() and data.finding_index("tumor") == 0


def test_resize_and_subset(fake_h5py) -> None:
    data = load_dataset("pcam", "val", root=str(fake_h5py), size=224, max_images=4, seed=0)
    assert data.images.shape == (4, 1, 224, 224)
    small = pcam("val", root=str(fake_h5py), size=32)
    assert small.images.shape == (6, 1, 32, 32) and int(small.images[0, 0, 5, 5]) == 76
