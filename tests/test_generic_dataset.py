"""The generic dataset (your own images, labels and masks in YAML): values as written, splits, cache, bad rows.

Every dataset here is written on the fly into ``tmp_path`` with PIL, so each value read back is
compared with the value written.
"""

from __future__ import annotations

import csv
import os
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from harness.data import load_dataset
from harness.data.generic import dataset_choice
from harness.data.generic_rows import SHOWN_ERRORS, DatasetRowsError
from harness.data.generic_spec import DatasetSpecError
from harness.data.imageset import SEX_FEMALE, SEX_MALE, SEX_UNKNOWN
from harness.registry import UnknownNameError

SIZE = 32
PATIENTS = ["p1", "p1", "p2", "p3", "p3", "p4"]
LABELS = [1, 0, 1, 0, 1, 0]
EFFUSION = ["0", "1", "", "1", "0", "0"]  # blank: unknown with missing_labels: unknown
SEX = ["M", "M", "F", "", "", "female"]
AGE = ["61", "61", "47.5", "", "70", "33"]
SITE = ["north", "north", "south", "south", "", "east"]
DRAIN = {0, 2}  # rows whose image carries a chest drain mask


def _pixels(i: int) -> np.ndarray:
    """A deterministic grayscale image per row (noise for PNG; the JPEG row gets a smooth ramp)."""
    if i == 5:
        return np.tile(np.linspace(20, 220, SIZE), (SIZE, 1)).round().astype(np.uint8)
    return np.random.default_rng(i).integers(0, 256, (SIZE, SIZE), dtype=np.uint8)


def _box(top: int, left: int, h: int, w: int) -> np.ndarray:
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    mask[top:top + h, left:left + w] = True
    return mask


def _save_mask(path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def make_dataset(root, *, rows=None, spec=None, write_masks=True) -> dict:
    """Six images of four patients, a CSV, lesion/lungs/drain masks and a YAML; returns what was written."""
    (root / "images").mkdir(parents=True)
    ids = [f"img{i}" for i in range(6)]
    written = {"pixels": [], "lesion": {}, "lungs": [], "drain": {}}
    for i, image_id in enumerate(ids):
        pixels = _pixels(i)
        Image.fromarray(pixels).save(root / "images" / (f"{image_id}.jpg" if i == 5 else f"{image_id}.png"))
        written["pixels"].append(pixels)
        lungs = _box(4, 4, 24, 24)
        written["lungs"].append(lungs)
        if write_masks:
            _save_mask(root / "masks" / "lungs" / f"{image_id}.png", lungs)
        if LABELS[i]:
            written["lesion"][i] = _box(6 + i, 8, 5, 7)
            if write_masks:
                _save_mask(root / "masks" / "lesion" / f"{image_id}.png", written["lesion"][i])
        if i in DRAIN:
            written["drain"][i] = _box(0, 20, 30, 2)
            if write_masks:
                _save_mask(root / "masks" / "drain" / f"{image_id}.png", written["drain"][i])
    header = ["image_id", "patient", "Pneumothorax", "Effusion", "Age", "Sex", "site"]
    table = rows if rows is not None else [
        [ids[i], PATIENTS[i], str(LABELS[i]), EFFUSION[i], AGE[i], SEX[i], SITE[i]] for i in range(6)]
    with open(root / "labels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([header, *table])
    config = {"name": "site-a", "images": "images", "labels": "labels.csv", "findings": ["Pneumothorax"],
              "patient_column": "patient", "metadata": {"age": "Age", "sex": "Sex", "site": "site"},
              "masks": {"lesions": "masks/lesion", "lungs": "masks/lungs",
                        "artifacts": {"chest_drain": "masks/drain"}}}
    config.update(spec or {})
    config = {k: v for k, v in config.items() if v is not None}
    (root / "data.yaml").write_text(yaml.safe_dump(config))
    return {"yaml": root / "data.yaml", "ids": ids, **written}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_HARNESS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _load(written, split="test", **options):
    return load_dataset("generic", split, config=str(written["yaml"]), size=SIZE, **options)


def test_binary_dataset_values_match_the_files(tmp_path, cache):
    written = make_dataset(tmp_path / "d")
    data = _load(written)
    assert data.name == "site-a/test" and data.finding_names == ("pneumothorax",) and len(data) == 6
    assert data.image_ids == tuple(written["ids"])
    for i in range(5):  # PNG: exact
        assert torch.equal(data.images[i, 0], torch.from_numpy(written["pixels"][i]))
    jpeg_error = (data.images[5, 0].int() - torch.from_numpy(written["pixels"][5]).int()).abs().max()
    assert jpeg_error <= 6  # a smooth ramp survives JPEG almost exactly
    assert data.labels.dtype == torch.int64 and data.labels.tolist() == LABELS
    assert data.patient_ids.tolist() == [0, 0, 1, 2, 2, 3]  # p1..p4 by rank
    for i in range(6):
        expected = written["lesion"].get(i, np.zeros((SIZE, SIZE), dtype=bool))
        assert torch.equal(data.lesion_masks[i, 0], torch.from_numpy(expected))
        assert torch.equal(data.lung_masks[i, 0], torch.from_numpy(written["lungs"][i]))
    assert data.has_artifact("chest_drain").nonzero().flatten().tolist() == sorted(DRAIN)
    assert torch.equal(data.artifact_masks["chest_drain"][0, 0], torch.from_numpy(written["drain"][0]))
    assert data.metadata["sex"].tolist() == [SEX_MALE, SEX_MALE, SEX_FEMALE, SEX_UNKNOWN, SEX_UNKNOWN, SEX_FEMALE]
    assert data.metadata["age"][:3].tolist() == [61.0, 61.0, 47.5] and torch.isnan(data.metadata["age"][3])
    assert data.metadata["site"].tolist() == [1, 1, 2, 2, -1, 0]  # codes of east, north, south; blank -1
    assert data.config["metadata_codes"] == {"site": ["east", "north", "south"]}


def test_images_and_masks_are_resized_to_the_profile_size(tmp_path, cache):
    written = make_dataset(tmp_path / "d")
    data = load_dataset("generic", "test", config=str(written["yaml"]), size=16)
    assert data.images.shape == (6, 1, 16, 16) and data.lesion_masks.shape == (6, 1, 16, 16)
    block_mean = written["pixels"][0].reshape(16, 2, 16, 2).mean(axis=(1, 3))  # box filter, 2x2 blocks
    assert np.abs(data.images[0, 0].numpy().astype(float) - block_mean).max() <= 1
    lungs = written["lungs"][0].reshape(16, 2, 16, 2).mean(axis=(1, 3)) >= 0.5
    assert torch.equal(data.lung_masks[0, 0], torch.from_numpy(lungs))


def test_multilabel_with_a_mask_folder_per_finding_and_unknown_labels(tmp_path, cache):
    written = make_dataset(tmp_path / "d", spec={
        "findings": ["Pneumothorax", "Effusion"], "missing_labels": "unknown",
        "masks": {"lesions": {"Pneumothorax": "masks/lesion"}, "lungs": "masks/lungs"}})
    data = _load(written)
    assert data.multilabel and data.finding_names == ("pneumothorax", "effusion")
    assert data.labels.dtype == torch.float32 and data.labels[:, 0].tolist() == [float(v) for v in LABELS]
    effusion = data.labels[:, 1]
    assert torch.isnan(effusion[2]) and effusion[[0, 1, 3]].tolist() == [0.0, 1.0, 1.0]
    assert torch.equal(data.lesion_masks[0, 0], torch.from_numpy(written["lesion"][0]))
    assert not data.lesion_masks[:, 1].any()  # effusion has no mask folder: not annotated
    assert data.artifact_masks == {}


def test_images_by_a_path_column_and_masks_by_a_path_column(tmp_path, cache):
    written = make_dataset(tmp_path / "d", spec={"image_column": "site", "metadata": None,
                                                "masks": {"lungs": {"column": "Age"}}},
                           rows=[[f"img{i}", PATIENTS[i], str(LABELS[i]), "0", f"masks/lungs/img{i}.png", "",
                                  f"nested/{i}.png" if i < 5 else "nested/5"] for i in range(6)])
    (tmp_path / "d" / "images" / "nested").mkdir()
    for i in range(6):
        suffix = ".jpg" if i == 5 else ".png"
        os.rename(tmp_path / "d" / "images" / f"img{i}{suffix}", tmp_path / "d" / "images" / "nested" / f"{i}{suffix}")
    data = _load(written)
    assert torch.equal(data.images[2, 0], torch.from_numpy(written["pixels"][2]))
    assert torch.equal(data.lung_masks[4, 0], torch.from_numpy(written["lungs"][4]))
    assert data.image_ids == tuple(written["ids"])


def test_splits_default_to_test_and_follow_a_column_or_a_seeded_patient_cut(tmp_path, cache):
    written = make_dataset(tmp_path / "d")
    with pytest.raises(DatasetSpecError, match=r"no split 'train'; its splits: test \(a pure test set"):
        _load(written, "train")

    column = make_dataset(tmp_path / "c", spec={"split": {"column": "site"}}, rows=[
        [f"img{i}", PATIENTS[i], str(LABELS[i]), "0", "", "", s]
        for i, s in enumerate(["train", "train", "val", "test", "test", "Valid"])])
    assert _load(column, "train").image_ids == ("img0", "img1")
    assert _load(column, "val").image_ids == ("img2", "img5")  # 'Valid' is val
    assert _load(column, "test").config["splits"] == ["train", "val", "test"]

    cut = make_dataset(tmp_path / "p", spec={"split": {"patients": [0.5, 0.25, 0.25], "seed": 3}})
    parts = {s: _load(cut, s) for s in ("train", "val", "test")}
    ids = sorted(i for p in parts.values() for i in p.image_ids)
    assert ids == written["ids"]  # every image in exactly one split
    patients = [set(p.patient_ids.tolist()) for p in parts.values()]
    assert all(not (a & b) for k, a in enumerate(patients) for b in patients[k + 1:])  # patient-disjoint
    assert _load(cut, "train").image_ids == parts["train"].image_ids  # seeded: the same cut again


def test_cache_key_changes_when_an_image_or_the_yaml_changes(tmp_path, cache):
    written = make_dataset(tmp_path / "d")
    first = _load(written)
    assert len(list(cache.glob("data/generic-*.npz"))) == 1
    assert torch.equal(_load(written).images, first.images)  # read back from the cache
    changed = np.full((SIZE, SIZE), 7, dtype=np.uint8)
    Image.fromarray(changed).save(tmp_path / "d" / "images" / "img0.png")
    assert torch.equal(_load(written).images[0, 0], torch.from_numpy(changed))
    text = written["yaml"].read_text().replace("name: site-a", "name: site-b")
    written["yaml"].write_text(text)
    assert _load(written).name == "site-b/test"
    assert len(list(cache.glob("data/generic-*.npz"))) == 3


def _bad_rows(written, split="test") -> str:
    with pytest.raises(DatasetRowsError) as info:
        _load(written, split)
    return str(info.value)


def _rows(**change) -> list[list[str]]:
    """The six good rows, with ``{row: {column index: value}}`` changed."""
    table = [[f"img{i}", PATIENTS[i], str(LABELS[i]), EFFUSION[i], AGE[i], SEX[i], SITE[i]] for i in range(6)]
    for row, cells in change.get("cells", {}).items():
        for column, value in cells.items():
            table[row][column] = value
    return table + change.get("extra", [])


def test_missing_image_file_is_named_with_file_and_line(tmp_path, cache):
    written = make_dataset(tmp_path / "d", rows=_rows(cells={3: {0: "img9"}}))
    message = _bad_rows(written)
    assert "1 problem(s) in 1 row(s) of labels.csv" in message
    assert "labels.csv, line 5 (image 'img9'): missing image file: no file named 'img9'" in message


def test_unreadable_image_is_named(tmp_path, cache):
    written = make_dataset(tmp_path / "d")
    (tmp_path / "d" / "images" / "img2.png").write_bytes(b"not a png")
    message = _bad_rows(written)
    assert "(reading the files)" in message and "line 4 (image 'img2'): unreadable image" in message


@pytest.mark.parametrize("value", ["2", "0.5", "-1", "yes"])
def test_label_that_is_not_0_or_1_is_named(tmp_path, cache, value):
    written = make_dataset(tmp_path / "d", rows=_rows(cells={1: {2: value}}))
    assert f"line 3 (image 'img1'): column 'Pneumothorax': label {value!r} is not 0 or 1" in _bad_rows(written)


def test_blank_label_is_an_error_unless_the_yaml_says_what_it_means(tmp_path, cache):
    written = make_dataset(tmp_path / "d", rows=_rows(cells={1: {2: ""}}))
    assert "column 'Pneumothorax': blank label; expected 0 or 1 (or set missing_labels: negative" in _bad_rows(written)


def test_mask_of_another_size_than_its_image_is_named(tmp_path, cache):
    written = make_dataset(tmp_path / "d")
    Image.fromarray(np.zeros((SIZE, SIZE + 8), dtype=np.uint8)).save(tmp_path / "d" / "masks" / "lungs" / "img4.png")
    message = _bad_rows(written)
    assert "line 6 (image 'img4'): lungs mask" in message
    assert f"is {SIZE + 8}x{SIZE} pixels, its image {SIZE}x{SIZE}" in message


def test_lesion_mask_on_a_negative_image_and_missing_lungs_mask_are_named(tmp_path, cache):
    written = make_dataset(tmp_path / "d")
    _save_mask(tmp_path / "d" / "masks" / "lesion" / "img1.png", _box(3, 3, 4, 4))
    os.remove(tmp_path / "d" / "masks" / "lungs" / "img3.png")
    with pytest.raises(DatasetRowsError, match=r"line 5 \(image 'img3'\): lungs mask: no file named 'img3'"):
        _load(written)
    os.remove(tmp_path / "d" / "masks" / "lesion" / "img1.png")
    _save_mask(tmp_path / "d" / "masks" / "lungs" / "img3.png", written["lungs"][3])
    _save_mask(tmp_path / "d" / "masks" / "lesion" / "img1.png", _box(3, 3, 4, 4))
    assert "line 3 (image 'img1'): lesion Pneumothorax mask img1.png is not empty, but the label of " \
           "'Pneumothorax' is 0" in _bad_rows(written)


def test_duplicate_ids_name_both_lines(tmp_path, cache):
    written = make_dataset(tmp_path / "d", rows=_rows(extra=[["img2", "p2", "1", "0", "", "", ""]]))
    assert "line 8 (image 'img2'): duplicate image id 'img2': also on line 4" in _bad_rows(written)


def test_unknown_column_in_the_yaml_lists_the_csv_columns(tmp_path, cache):
    written = make_dataset(tmp_path / "d", spec={"patient_column": "PatientID"})
    with pytest.raises(DatasetSpecError, match=r"column\(s\) 'PatientID' \(patient_column\) not in labels.csv; its "
                                                r"columns: image_id, patient, Pneumothorax, Effusion, Age, Sex, site"):
        _load(written)


def test_patient_in_two_splits_is_named(tmp_path, cache):
    rows = [[f"img{i}", PATIENTS[i], str(LABELS[i]), "0", "", "", s]
            for i, s in enumerate(["train", "test", "val", "test", "test", "test"])]
    written = make_dataset(tmp_path / "d", spec={"split": {"column": "site"}}, rows=rows)
    assert "line 3 (image 'img1'): patient 'p1' is in split 'test' here and in 'train' on line 2" in _bad_rows(written)


def test_every_bad_row_is_collected_into_one_error(tmp_path, cache):
    extra = [[f"ghost{k}", "p9", "3", "", "", "x", ""] for k in range(SHOWN_ERRORS)]
    written = make_dataset(tmp_path / "d", rows=_rows(extra=extra))
    message = _bad_rows(written)
    # each ghost row: missing image, bad label, bad sex = 3 problems
    assert f"{3 * SHOWN_ERRORS} problem(s) in {SHOWN_ERRORS} row(s)" in message
    assert f"... and {2 * SHOWN_ERRORS} more" in message
    assert message.count("\n  labels.csv, line") == SHOWN_ERRORS


def test_malformed_yaml_keys_are_named(tmp_path, cache):
    written = make_dataset(tmp_path / "d", spec={"split": "random"})
    with pytest.raises(DatasetSpecError, match=r"data.yaml: key 'split': expected 'test'"):
        _load(written)
    written = make_dataset(tmp_path / "e", spec={"masks": {"lungs": "masks/nowhere"}})
    with pytest.raises(DatasetSpecError, match=r"key 'masks.lungs': folder .*nowhere does not exist"):
        _load(written)
    written = make_dataset(tmp_path / "f", spec={"findngs": ["x"]})
    with pytest.raises(DatasetSpecError, match=r"unknown key\(s\) \['findngs'\]"):
        _load(written)


def test_dicom_without_pydicom_says_how_to_install_it(tmp_path, cache):
    import importlib.util

    if importlib.util.find_spec("pydicom") is not None:
        pytest.skip("pydicom is installed here")
    written = make_dataset(tmp_path / "d", spec={"masks": None})
    os.remove(tmp_path / "d" / "images" / "img0.png")
    (tmp_path / "d" / "images" / "img0.dcm").write_bytes(b"\0" * 132)
    with pytest.raises(ImportError, match="pip install pydicom"):
        _load(written)


def test_dataset_option_accepts_a_yaml_or_a_registered_name(tmp_path, cache):
    written = make_dataset(tmp_path / "d")
    assert dataset_choice(str(written["yaml"])) == {"name": "generic", "options": {"config": str(written["yaml"])}}
    assert dataset_choice("synth-cxr") == {"name": "synth-cxr", "options": {}}
    with pytest.raises(UnknownNameError, match="known datasets: .*generic"):
        dataset_choice("my-data")
    with pytest.raises(DatasetSpecError, match="does not exist"):
        dataset_choice(str(tmp_path / "missing.yaml"))


def test_counterfactual_checks_skip_saying_they_need_synthetic_data_and_mask_checks_run(tmp_path, cache,
                                                                                         one_thread):
    from harness.checks.api import evaluate, measure
    from harness.explain.context import ModelContext
    from harness.models.architectures import create_model

    written = make_dataset(tmp_path / "d")
    torch.manual_seed(0)
    manifest = {"architecture": "test_resnet", "img_size": SIZE, "seed": 0, "epoch": 1,
                "dataset": {"name": "generic", "options": {"config": str(written["yaml"])}}}
    ctx = ModelContext("tiny", create_model("test_resnet", img_size=SIZE).eval(), manifest, batch_size=8)
    for check in ("artifact_removal", "artifact_addition", "artifact_effect"):
        result = evaluate(check, ctx, require="ci_high <= 0.1", n_boot=20)
        assert result.verdict.value == "skip"
        assert "needs a synthetic dataset (synth-cxr)" in result.message and "site-a/test" in result.message
    result = evaluate("decorrelated_auroc_drop", ctx, require="ci_high <= 0.1", n_boot=20)
    assert result.verdict.value == "skip" and "has no split 'test_decorrelated' (its splits: test)" in result.message
    drain = measure("artifact_attribution", ctx, "random", n_boot=20)  # the drain masks are read
    assert drain.n == len(DRAIN) and drain.n_patients == 2
    assert 0.0 < drain.value < 3.0  # random maps: about the drain's share of the image
    result = evaluate("outside_anatomy_attribution", ctx, "gradcam", require="ci_high <= 1.5", n_boot=20)
    assert "no lung masks" not in result.message


TOY_ZOO = """\
models:
  toy:
    architecture: test_resnet
    dataset: toy-blobs
    dataset_options: {n: 64}
    recipe: toy
    seed: 0
"""

SUITE = """\
suite: toy
defaults: {explainers: [gradcam], n_boot: 50, seed: 0}
checks:
  - id: performance_auroc
    check: auroc
    require: value >= 0.0
  - id: shortcut_chest_drain_removal
    check: artifact_removal
    require: ci_high <= 0.1
"""


def test_checkpoint_is_checked_on_the_dataset_option(pytester, tmp_path, monkeypatch):
    """``--checkpoint`` with ``--dataset my.yaml``: the suite's items run on the YAML's images."""
    from harness.models import CheckpointStore, ensure_trained, get_zoo_entry
    from harness.models.testing import install_toy

    install_toy()
    pytester.makeconftest("from harness.models.testing import install_toy\ninstall_toy()\n")
    (tmp_path / "zoo.yaml").write_text(TOY_ZOO)
    monkeypatch.setenv("XAI_HARNESS_ZOO", str(tmp_path / "zoo.yaml"))
    monkeypatch.setenv("XAI_HARNESS_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    run = ensure_trained(get_zoo_entry("toy"), profile="cpu", store=CheckpointStore(tmp_path / "ckpt"),
                         progress=False)
    written = make_dataset(tmp_path / "d")
    (pytester.path / "suites").mkdir()
    (pytester.path / "suites" / "toy.yaml").write_text(SUITE)
    (pytester.path / "suites" / "test_data.py").write_text(textwrap.dedent("""
        def test_the_checked_data_is_the_yaml(dataset):
            assert dataset.name == "site-a/test" and len(dataset) == 6
    """))
    args = ["suites", "--checkpoint", str(run.checkpoint()), "--profile", "cpu", "--report-dir",
            str(pytester.path / "reports"), "-p", "no:cacheprovider"]
    result = pytester.runpytest_subprocess(*args, "--dataset", str(written["yaml"]), "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*needs a synthetic dataset (synth-cxr)*"])


def test_bad_dataset_option_is_a_usage_error(tmp_path, cache):
    from harness.plugin.options import _check_dataset

    with pytest.raises(pytest.UsageError, match="--dataset: unknown dataset 'my-data'; known datasets: .*generic"):
        _check_dataset("my-data")
    written = make_dataset(tmp_path / "d", rows=_rows(cells={0: {2: "7"}}))
    with pytest.raises(pytest.UsageError, match="(?s)--dataset: .*line 2 \\(image 'img0'\\): column 'Pneumothorax'"):
        _check_dataset(str(written["yaml"]))


def test_a_model_on_your_files_is_retrained_when_the_files_change(tmp_path):
    """The run's key covers the label CSV and the images: edited labels never reuse weights fitted to the old ones."""
    from harness.models.recipes import get_recipe
    from harness.models.run_identity import config_hash
    from harness.models.zoo import ZooEntry

    written = make_dataset(tmp_path / "d")
    entry = ZooEntry(name="mine", architecture="resnet18", dataset="generic", recipe="pneumothorax_cnn", seed=0,
                     dataset_options={"config": str(written["yaml"])})
    shuffled = ZooEntry(name="mine_shuffled", architecture="resnet18", dataset="shuffled-labels", seed=0,
                        recipe="pneumothorax_cnn",
                        dataset_options={"base": "generic", "config": str(written["yaml"]), "label_seed": 1})
    recipe = get_recipe("pneumothorax_cnn", "cpu")
    before = config_hash(entry, recipe, "cpu"), config_hash(shuffled, recipe, "cpu")
    assert before == (config_hash(entry, recipe, "cpu"), config_hash(shuffled, recipe, "cpu"))  # stable
    labels = tmp_path / "d" / "labels.csv"
    labels.write_text(labels.read_text().replace("img0,p1,1", "img0,p1,0"))
    assert "img0,p1,0" in labels.read_text()
    after_labels = config_hash(entry, recipe, "cpu"), config_hash(shuffled, recipe, "cpu")
    assert after_labels[0] != before[0] and after_labels[1] != before[1]
    image = tmp_path / "d" / "images" / "img1.png"
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(image)
    os.utime(image, ns=(1, 1))  # another size and mtime
    assert config_hash(entry, recipe, "cpu") != after_labels[0]
    (tmp_path / "d" / "labels.csv").unlink()  # unreadable: a key no stored run has, never an exception here
    assert config_hash(entry, recipe, "cpu") not in (before[0], after_labels[0])
