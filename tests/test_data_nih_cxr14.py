"""NIH ChestX-ray14 loader on tiny files written in the release's exact formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.data import load_dataset
from harness.data.imageset import SEX_FEMALE, SEX_MALE, VIEW_AP, VIEW_PA
from harness.data.nih_cxr14 import FINDINGS, nih_cxr14, parse_age

HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
# image, labels, follow-up, patient, age, sex, view
ENTRIES = [
    ("00000001_000.png", "Cardiomegaly", 0, 1, 57, "M", "PA"),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, 1, 58, "M", "PA"),
    ("00000002_000.png", "No Finding", 0, 2, 81, "F", "AP"),
    ("00000003_000.png", "Infiltration|Nodule", 0, 3, 34, "F", "PA"),
    ("00000003_001.png", "Effusion|Infiltration", 1, 3, 35, "F", "AP"),
    ("00000004_000.png", "No Finding", 0, 4, 12, "M", "PA"),
    ("00000005_000.png", "Pleural_Thickening|Hernia", 0, 5, 70, "M", "PA"),
    ("00000006_000.png", "Mass", 0, 6, 44, "F", "AP"),
]
TEST_IMAGES = {"00000003_000.png", "00000003_001.png", "00000006_000.png"}
FRAME = 128  # the PNGs' own size (1024 in the release); boxes are given in these pixels


def write_release(root: Path, *, entries=ENTRIES, header: str = HEADER, boxes: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [header] + [f"{i},{lab},{f},{p},{a},{s},{v},2500,2048,0.168,0.168" for i, lab, f, p, a, s, v in entries]
    (root / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    folder = root / "images_001" / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for k, (name, *_rest) in enumerate(entries):
        Image.fromarray(np.full((FRAME, FRAME), 20 + 25 * k, dtype=np.uint8), mode="L").save(folder / name)
    (root / "test_list.txt").write_text("\n".join(sorted(TEST_IMAGES)) + "\n")
    others = [e[0] for e in entries if e[0] not in TEST_IMAGES]
    (root / "train_val_list.txt").write_text("\n".join(others) + "\n")
    if boxes:
        (root / "BBox_List_2017.csv").write_text(
            "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
            "00000003_000.png,Nodule,32.0,16.0,32.0,64.0\n"
            "00000003_000.png,Infiltrate,0.5,96.25,16.0,16.0\n"  # BBox_List says 'Infiltrate'
            "00000002_000.png,Atelectasis,64.0,64.0,1.0,1.0\n"  # AP view, train_val list, tiny box
        )
    return root


@pytest.fixture()
def root(tmp_path) -> Path:
    return write_release(tmp_path / "nih")


def test_official_split_labels_and_metadata(root, tmp_path) -> None:
    test = nih_cxr14("test", root=str(root), size=32, cache_dir=str(tmp_path / "c"))
    assert test.name == "nih-cxr14/test" and test.multilabel and test.finding_names == FINDINGS
    assert set(test.image_ids) == TEST_IMAGES and len(FINDINGS) == 14
    assert test.images.shape == (3, 1, 32, 32) and test.images.dtype == torch.uint8
    row = test.image_ids.index("00000003_001.png")
    assert set(test.labels[row].nonzero().flatten().tolist()) == {FINDINGS.index("effusion"), FINDINGS.index("infiltration")}
    assert int(test.images[row].float().mean().round()) == 20 + 25 * 4  # the right file for the row
    assert test.metadata["age"][row] == 35 and test.metadata["sex"][row] == SEX_FEMALE
    assert test.metadata["view"][row] == VIEW_AP and test.metadata["follow_up"][row] == 1
    train = nih_cxr14("train", root=str(root), size=32, val_fraction=0.25, cache_dir=str(tmp_path / "c"))
    val = nih_cxr14("val", root=str(root), size=32, val_fraction=0.25, cache_dir=str(tmp_path / "c"))
    assert set(train.image_ids) | set(val.image_ids) == {e[0] for e in ENTRIES} - TEST_IMAGES
    assert not set(train.patient_ids.tolist()) & set(val.patient_ids.tolist())  # patient-wise
    both = set(train.image_ids) | set(val.image_ids)
    no_finding = [d.labels[d.image_ids.index("00000004_000.png")] for d in (train, val) if "00000004_000.png" in d.image_ids]
    assert "00000004_000.png" in both and float(no_finding[0].sum()) == 0.0  # 'No Finding' = all zeros
    assert test.lung_masks is None


def test_box_masks_all_views_rescaled_to_the_output(root) -> None:
    data = nih_cxr14("bbox", root=str(root), size=64, cache=False)
    assert sorted(data.image_ids) == ["00000002_000.png", "00000003_000.png"]  # the AP image is kept
    i = data.image_ids.index("00000003_000.png")
    nodule = data.lesion_masks[i, FINDINGS.index("nodule")]
    expected = torch.zeros(64, 64, dtype=torch.bool)
    expected[8:40, 16:32] = True  # (x=32, y=16, w=32, h=64) in a 128 frame, halved
    assert torch.equal(nodule, expected)
    infiltration = data.lesion_masks[i, FINDINGS.index("infiltration")]
    assert infiltration.any() and infiltration[48:56, 0:8].all()
    tiny = data.lesion_masks[data.image_ids.index("00000002_000.png"), FINDINGS.index("atelectasis")]
    assert int(tiny.sum()) == 1  # a box smaller than a pixel keeps one pixel
    others = [k for k in range(14) if k not in (FINDINGS.index("nodule"), FINDINGS.index("infiltration"))]
    assert not data.lesion_masks[i, others].any()


def test_boxes_on_the_test_split_and_without_box_file(root, tmp_path) -> None:
    test = nih_cxr14("test", root=str(root), size=32, cache=False)
    assert test.lesion_masks.flatten(2).any(2).sum() == 2  # the two boxes of 00000003_000
    plain = nih_cxr14("test", root=str(root), size=32, boxes=False, cache=False)
    assert not plain.lesion_masks.any() and plain.lesion_masks.shape == (3, 14, 32, 32)
    (root / "BBox_List_2017.csv").unlink()
    with pytest.raises(FileNotFoundError, match="BBox_List_2017.csv"):
        nih_cxr14("test", root=str(root), size=32, boxes=True, cache=False)
    with pytest.raises(FileNotFoundError, match="split 'bbox' needs BBox_List_2017.csv"):
        nih_cxr14("bbox", root=str(root), size=32, cache=False)


def test_views_filter_max_images_and_registry(root, tmp_path) -> None:
    pa = nih_cxr14("all", root=str(root), size=32, views=["PA"], cache=False)
    assert (pa.metadata["view"] == VIEW_PA).all() and len(pa) == 5
    some = nih_cxr14("all", root=str(root), size=32, max_images=3, seed=1, cache=False)
    assert len(some) == 3
    again = load_dataset("nih-cxr14", "all", root=str(root), size=32, max_images=3, seed=1, cache=False)
    assert again.image_ids == some.image_ids
    assert int(pa.metadata["sex"][0]) == SEX_MALE


def test_cache_hit_equals_fresh_read_and_follows_file_changes(root, tmp_path) -> None:
    cache = str(tmp_path / "cache")
    fresh = nih_cxr14("bbox", root=str(root), size=32, cache_dir=cache)
    hit = nih_cxr14("bbox", root=str(root), size=32, cache_dir=cache)
    assert torch.equal(fresh.images, hit.images) and torch.equal(fresh.lesion_masks, hit.lesion_masks)
    assert hit.image_ids == fresh.image_ids and hit.metadata.keys() == fresh.metadata.keys()
    assert len(list(Path(cache).glob("nih-cxr14-*.npz"))) == 1
    boxes = root / "BBox_List_2017.csv"
    boxes.write_text(boxes.read_text().replace("32.0,16.0", "0.0,0.0"))  # an edited box file is re-read
    moved = nih_cxr14("bbox", root=str(root), size=32, cache_dir=cache)
    assert not torch.equal(moved.lesion_masks, fresh.lesion_masks)


def test_errors_name_file_line_and_column(tmp_path) -> None:
    root = write_release(tmp_path / "a")
    (root / "Data_Entry_2017_v2020.csv").write_text(HEADER.replace("Patient Gender", "Sex") + "\n")
    with pytest.raises(ValueError, match=r"Data_Entry_2017_v2020.csv lacks column\(s\) \['Patient Gender'\]"):
        nih_cxr14("test", root=str(root), cache=False)
    bad = [*ENTRIES[:2], ("00000002_000.png", "Cardiomegaly|Pneumothoraxx", 0, 2, 81, "F", "AP")]
    root = write_release(tmp_path / "b", entries=bad)
    with pytest.raises(ValueError, match=r"line 4, column 'Finding Labels': unknown label 'Pneumothoraxx'"):
        nih_cxr14("all", root=str(root), cache=False)
    root = write_release(tmp_path / "c")
    (root / "test_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test_list.txt.*official_split=False"):
        nih_cxr14("test", root=str(root), cache=False)
    assert len(nih_cxr14("test", root=str(root), official_split=False, size=32, cache=False)) >= 1
    (root / "images_001" / "images" / "00000006_000.png").unlink()
    with pytest.raises(FileNotFoundError, match="00000006_000.png"):
        nih_cxr14("all", root=str(root), cache=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nih_cxr14("test", root=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="Data_Entry_2017_v2020.csv"):
        nih_cxr14("test", root=str(tmp_path))
    with pytest.raises(ValueError, match="valid splits"):
        nih_cxr14("training", root=str(root))


def test_parse_age_both_formats() -> None:
    assert parse_age("57", "x") == 57 and parse_age("058Y", "x") == 58 and parse_age("006M", "x") == 0.5
    assert np.isnan(parse_age("", "x"))
    with pytest.raises(ValueError, match="where: expected an age"):
        parse_age("old", "where")


def test_real_release_metadata_parses() -> None:
    """The real Data_Entry and BBox csvs (shipped in torchxrayvision, no images) parse completely,
    and the box split keeps all 880 box images, AP views included."""
    from harness.data.files import read_csv
    from harness.data.lesions import siim_csv_path
    from harness.data.nih_cxr14 import COLUMNS, parse_entry, read_boxes

    folder = siim_csv_path().parent
    rows = [parse_entry(line, row, "Data_Entry") for line, row in read_csv(folder / "Data_Entry_2017_v2020.csv.gz",
                                                                          COLUMNS, "nih-cxr14")]
    assert len(rows) == 112_120 and len({r["patient"] for r in rows}) == 30_805
    counts = np.stack([r["labels"] for r in rows]).sum(0)
    assert counts[FINDINGS.index("atelectasis")] == 11_559 and counts[FINDINGS.index("hernia")] == 227
    boxes = read_boxes(folder / "BBox_List_2017.csv.gz")
    assert len(boxes) == 880 and sum(len(v) for v in boxes.values()) == 984
    views = {r["image"]: r["view"] for r in rows}
    assert sum(views[i] == VIEW_AP for i in boxes) == 402 and sum(views[i] == VIEW_PA for i in boxes) == 478
