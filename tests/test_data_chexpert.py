"""CheXpert loader on tiny files in the release format: 1.0/0.0/-1.0/blank, uncertainty policies."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import load_dataset
from harness.data.chexpert import FINDINGS, OBSERVATIONS, chexpert
from harness.data.imageset import SEX_FEMALE, SEX_MALE, VIEW_AP, VIEW_LATERAL, VIEW_PA

HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
          "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
          "Fracture,Support Devices")
RELEASE = "CheXpert-v1.0-small"
# (split file, patient, study, view file, sex, age, frontal/lateral, ap/pa, 14 values)
ROWS = [
    ("train", 1, 1, "view1_frontal", "Female", 68, "Frontal", "AP", "1.0,,,,,,,,,0.0,,,,1.0"),
    ("train", 2, 2, "view1_frontal", "Female", 87, "Frontal", "AP", ",,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,"),
    ("train", 2, 1, "view2_lateral", "Female", 83, "Lateral", "", ",,,1.0,,,-1.0,,,,,,1.0,"),
    ("train", 3, 1, "view1_frontal", "Male", 41, "Frontal", "PA", ",,,,,,,,,1.0,,,,"),
    ("train", 4, 1, "view1_frontal", "Male", 20, "Frontal", "PA", "1.0,0.0,0.0,,,,,,,,,,,"),
    ("train", 5, 1, "view1_frontal", "Unknown", 55, "Frontal", "AP", ",,1.0,,,,,,,,1.0,,,"),
    ("valid", 64541, 1, "view1_frontal", "Male", 73, "Frontal", "AP", "0.0,1.0,1.0,1.0,0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0"),
    ("valid", 64542, 1, "view1_frontal", "Male", 70, "Frontal", "PA", "0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0"),
]


def write_release(parent: Path) -> Path:
    files = {"train": [HEADER], "valid": [HEADER]}
    for k, (split, patient, study, view, sex, age, fl, appa, values) in enumerate(ROWS):
        relative = f"{RELEASE}/{split}/patient{patient:05d}/study{study}/{view}.jpg"
        path = parent / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((390, 320), 20 + 25 * k, dtype=np.uint8), mode="L").save(path, quality=95)
        files[split].append(f"{relative},{sex},{age},{fl},{appa},{values}")
    for split, lines in files.items():
        (parent / RELEASE / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return parent / RELEASE


@pytest.fixture()
def release(tmp_path) -> Path:
    return write_release(tmp_path / "data")


def test_test_split_is_valid_csv_with_metadata(release) -> None:
    data = chexpert("test", root=str(release), size=32, cache=False)
    assert data.name == "chexpert/test" and data.multilabel and data.finding_names == FINDINGS and len(FINDINGS) == 14
    assert len(data) == 2 and data.images.shape == (2, 1, 32, 32)
    assert data.labels[0].tolist() == [float(v) for v in ROWS[6][8].split(",")]
    assert data.metadata["view"].tolist() == [VIEW_AP, VIEW_PA] and data.metadata["sex"].tolist() == [SEX_MALE] * 2
    assert data.patient_ids.tolist() == [64541, 64542] and data.lung_masks is None
    assert not data.lesion_masks.any() and data.lesion_masks.shape == (2, 14, 32, 32)
    assert abs(float(data.images[1].float().mean()) - (20 + 25 * 7)) < 2  # JPEG: nearly the written value


@pytest.mark.parametrize("policy, uncertain", [("zeros", 0.0), ("ones", 1.0), ("ignore", float("nan"))])
def test_uncertainty_policies_and_blank_is_negative(release, policy: str, uncertain: float) -> None:
    rows = [chexpert(s, root=str(release), size=16, uncertainty=policy, val_fraction=0.4, cache=False)
            for s in ("train", "val")]
    data = next(d for d in rows if any("patient00002/study2" in i for i in d.image_ids))
    labels = data.labels[[i for i, p in enumerate(data.image_ids) if "patient00002/study2" in p][0]]
    cardiomegaly = labels[OBSERVATIONS.index("Cardiomegaly")]
    assert (math.isnan(cardiomegaly) and math.isnan(uncertain)) or float(cardiomegaly) == uncertain
    assert float(labels[OBSERVATIONS.index("Lung Opacity")]) == 1.0
    assert float(labels[OBSERVATIONS.index("No Finding")]) == 0.0  # blank = not mentioned = 0


def test_train_val_are_patient_wise_and_cover_train_csv(release) -> None:
    train = chexpert("train", root=str(release), size=16, val_fraction=0.4, cache=False)
    val = chexpert("val", root=str(release), size=16, val_fraction=0.4, cache=False)
    assert len(train) + len(val) == 6
    assert not set(train.patient_ids.tolist()) & set(val.patient_ids.tolist())
    views = torch.cat([train.metadata["view"], val.metadata["view"]])
    assert int((views == VIEW_LATERAL).sum()) == 1
    sexes = torch.cat([train.metadata["sex"], val.metadata["sex"]])
    assert set(sexes.tolist()) == {SEX_FEMALE, SEX_MALE, -1}
    frontal = [chexpert(s, root=str(release), size=16, val_fraction=0.4, frontal_only=True, cache=False)
               for s in ("train", "val")]
    assert sum(len(d) for d in frontal) == 5


def test_root_may_be_the_parent_folder_and_cache(release, tmp_path) -> None:
    cache = str(tmp_path / "cache")
    data = load_dataset("chexpert", "test", root=str(release.parent), size=16, cache_dir=cache)
    again = load_dataset("chexpert", "test", root=str(release.parent), size=16, cache_dir=cache)
    assert torch.equal(data.images, again.images) and again.lesion_masks.stride() == (0, 0, 0, 0)
    assert torch.equal(data.labels, again.labels)


def test_airspace_opacity_alias(release) -> None:
    data = chexpert("test", root=str(release), size=16, cache=False)
    assert data.finding_index("Airspace Opacity") == data.finding_index("Lung Opacity") == 3
    assert data.finding_index("pleural effusion") == data.finding_index("effusion") == 10


def test_errors_name_file_line_and_column(release, tmp_path) -> None:
    csv = release / "valid.csv"
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], lines[1].replace(",1.0,1.0,1.0,", ",1.0,yes,1.0,", 1)]) + "\n")
    with pytest.raises(ValueError, match=r"valid.csv, line 2, column 'Cardiomegaly': expected 1.0, 0.0, -1.0 or blank, got 'yes'"):
        chexpert("test", root=str(release), cache=False)
    csv.write_text(lines[0].replace(",Fracture", "") + "\n")
    with pytest.raises(ValueError, match=r"valid.csv lacks column\(s\) \['Fracture'\]"):
        chexpert("test", root=str(release), cache=False)
    csv.write_text("\n".join([lines[0], lines[1].replace("patient64541", "patient99999")]) + "\n")
    with pytest.raises(FileNotFoundError, match=r"valid.csv, line 2, column 'Path': image .*patient99999"):
        chexpert("test", root=str(release), cache=False)
    with pytest.raises(ValueError, match="uncertainty must be one of"):
        chexpert("test", root=str(release), uncertainty="maybe")
    with pytest.raises(FileNotFoundError, match="train.csv"):
        chexpert("train", root=str(tmp_path))


def test_real_release_csv_parses() -> None:
    """The real CheXpert train csv (in torchxrayvision, no images) parses under every value rule."""
    from harness.data.chexpert import COLUMNS, parse_row
    from harness.data.files import read_csv
    from harness.data.lesions import siim_csv_path

    path = siim_csv_path().parent / "chexpert_train.csv.gz"
    rows = [parse_row(line, row, path.name, "ignore") for line, row in read_csv(path, COLUMNS, "chexpert")]
    assert len(rows) == 223_414
    labels = np.stack([r["labels"] for r in rows])
    assert np.isnan(labels).any() and set(np.unique(labels[~np.isnan(labels)])) == {0.0, 1.0}
    assert all(r["patient"] > 0 for r in rows[:1000])
