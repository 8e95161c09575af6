"""synth-histo: deterministic H&E patches, tumour masks inside the tissue, slide-wise splits, the pen-mark shortcut."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import list_datasets, load_dataset
from harness.data.cache import save_arrays
from harness.data.histo_world import build_histo_world
from harness.data.splits import CALIB_PATIENT_OFFSET
from harness.data.store import imageset_to_arrays
from harness.data.synth_histo import FINDINGS, generate, make_config

SMALL = {"size": 32, "n_slides": 12}


@pytest.fixture(scope="module")
def test_split():
    return generate(make_config("test", n_slides=40, size=48))


def test_registered_and_same_seed_gives_the_same_bytes(tmp_path):
    assert "synth-histo" in list_datasets()
    first = generate(make_config("val", **SMALL))
    again = generate(make_config("val", **SMALL))
    for a, b in zip(imageset_to_arrays(first).values(), imageset_to_arrays(again).values()):
        assert np.array_equal(a, b)
    other = generate(make_config("val", **SMALL, seed=1))
    assert not torch.equal(first.images[: len(other)], other.images[: len(first)])


def test_cache_returns_what_was_generated(tmp_path):
    made = load_dataset("synth-histo", "train", cache_dir=str(tmp_path), **SMALL)
    assert len(list(tmp_path.glob("synth-histo-*.npz"))) == 1
    read = load_dataset("synth-histo", "train", cache_dir=str(tmp_path), **SMALL)
    assert torch.equal(made.images, read.images) and torch.equal(made.lesion_masks, read.lesion_masks)
    assert torch.equal(made.artifact_masks["pen_mark"], read.artifact_masks["pen_mark"])
    assert read.config == made.config and read.metadata.keys() == {"site"}


def test_values_shapes_and_dtypes(test_split):
    data = test_split
    n = len(data)
    assert data.images.dtype == torch.uint8 and data.images.shape == (n, 1, 48, 48)
    assert data.labels.dtype == torch.int64 and set(data.labels.unique().tolist()) == {0, 1}
    assert data.lesion_masks.shape == (n, 1, 48, 48) and data.lesion_masks.dtype == torch.bool
    assert data.lung_masks.dtype == torch.bool and data.finding_names == ("tumour",)
    assert data.name == "synth-histo/test" and set(data.metadata["site"].unique().tolist()) <= {0, 1, 2, 3}
    spread = data.images.float()
    assert 60 < spread.mean() < 220 and spread.std() > 20  # stained tissue, not a flat or saturated image


def test_larger_sizes_render_the_same_patches_upsampled():
    """Rendered at PCam's 96 px: the gpu profile's larger size is the same patch, resized (like real PCam)."""
    small, large = (generate(make_config("val", size=s, n_slides=4)) for s in (96, 128))
    assert large.images.shape[-1] == 128 and torch.equal(small.labels, large.labels)
    down = torch.nn.functional.interpolate(large.as_float(), size=(96, 96), mode="area")
    assert (down - small.as_float()).abs().mean() < 0.03


def test_label_is_tumour_present_and_masks_lie_in_the_tissue(test_split):
    data = test_split
    has_tumour = data.lesion_masks.flatten(1).any(1)
    assert torch.equal(has_tumour, data.labels.bool())
    assert not (data.lesion_masks & ~data.lung_masks).any()
    fraction = data.lesion_masks.flatten(1).float().mean(1)[data.labels == 1]
    assert fraction.min() >= 0.02 and 0.05 < fraction.mean() < 0.4
    tissue = data.lung_masks.flatten(1).float().mean(1)
    assert tissue.min() >= 0.5 and (tissue < 1).any() and (tissue == 1).any()  # some patches at the border


def test_tumour_nuclei_make_positives_darker_inside_the_mask(test_split):
    """The lesion is in the pixels: tumour pixels are darker than the rest of the tissue of the same patch."""
    data = test_split
    x = data.as_float()
    pos = data.labels == 1
    inside = (x * data.lesion_masks).flatten(1).sum(1) / data.lesion_masks.flatten(1).sum(1).clamp_min(1)
    rest = data.lung_masks & ~data.lesion_masks
    outside = (x * rest).flatten(1).sum(1) / rest.flatten(1).sum(1).clamp_min(1)
    assert (inside[pos] < outside[pos]).float().mean() > 0.9


def test_slides_are_the_patients_and_splits_are_disjoint():
    ids = {s: set(load_dataset("synth-histo", s, **SMALL, cache_dir=None).patient_ids.tolist())
           for s in ("train", "val", "test", "test_decorrelated")}
    names = list(ids)
    assert all(not (ids[a] & ids[b]) for i, a in enumerate(names) for b in names[i + 1:])
    calib = generate(make_config("calib", **SMALL))
    assert calib.patient_ids.min() >= CALIB_PATIENT_OFFSET
    per_slide = torch.unique(calib.patient_ids, return_counts=True)[1]
    assert per_slide.min() >= 3 and per_slide.max() <= 10


@pytest.mark.parametrize("p_pos,p_neg", [(1.0, 0.0), (0.9, 0.1), (0.0, 0.0)])
def test_shortcut_strength_is_as_asked(p_pos, p_neg):
    config = make_config("train", **SMALL, shortcuts={"pen_mark": {"p_pos": p_pos, "p_neg": p_neg}})
    data = generate(config)
    world = build_histo_world(0, SMALL["n_slides"], 0.5)
    rows = world.split_patches("train")
    uniforms = torch.from_numpy(world.artifact_uniforms["pen_mark"][rows])
    expected = uniforms < torch.where(data.labels == 1, p_pos, p_neg)
    assert torch.equal(data.has_artifact("pen_mark"), expected)


def test_decorrelated_split_draws_pen_marks_at_one_half_in_both_classes():
    config = make_config("test_decorrelated", n_slides=200, size=32,
                         shortcuts={"pen_mark": {"p_pos": 1.0, "p_neg": 0.0}})
    world = build_histo_world(0, 200, 0.5)
    rows = world.split_patches("test_decorrelated")
    present = world.presence("test_decorrelated", rows, config["shortcuts"])["pen_mark"]
    labels = world.labels[rows]
    assert abs(present[labels == 1].mean() - 0.5) < 0.12 and abs(present[labels == 0].mean() - 0.5) < 0.12


def test_the_pen_mark_counterfactual_changes_only_the_stroke():
    with_pen = generate(make_config("val", **SMALL, shortcuts={"pen_mark": {"p_pos": 1.0, "p_neg": 1.0}}))
    without = generate(make_config("val", **SMALL, shortcuts={}))
    assert without.artifact_masks == {} and with_pen.has_artifact("pen_mark").all()
    assert torch.equal(with_pen.labels, without.labels) and torch.equal(with_pen.lesion_masks, without.lesion_masks)
    near = torch.nn.functional.max_pool2d(with_pen.artifact_masks["pen_mark"].float(), 7, 1, 3) > 0
    changed = with_pen.images != without.images
    assert changed.any() and not (changed & ~near).any()


def test_tissue_task_labels_the_same_patches_with_other_findings():
    tumour = generate(make_config("val", **SMALL))
    tissue = generate(make_config("val", **SMALL, task="tissue"))
    assert torch.equal(tumour.images, tissue.images)
    assert tissue.finding_names == FINDINGS["tissue"] and tissue.labels.dtype == torch.float32
    assert tissue.labels.shape == (len(tumour), 3) and tissue.lesion_masks.shape[1] == 3
    lymph = tissue.labels[:, 0].bool()
    assert torch.equal(lymph, tissue.lesion_masks[:, 0].flatten(1).any(1))


@pytest.mark.parametrize("options,message", [
    ({"shortcuts": {"chest_drain": {"p_pos": 1.0, "p_neg": 0.0}}}, "unknown shortcut"),
    ({"shortcuts": {"pen_mark": {"p_pos": 1.5, "p_neg": 0.0}}}, r"must lie in \[0, 1\]"),
    ({"task": "grading"}, "unknown task 'grading'; valid tasks: tumour, tissue"),
    ({"prevalence": -0.1}, "prevalence"),
])
def test_bad_options_name_the_problem(options, message):
    with pytest.raises(ValueError, match=message):
        make_config("train", **options)


def test_a_cache_file_of_another_config_is_regenerated(tmp_path):
    config = make_config("val", **SMALL)
    data = generate(config)
    from harness.data.cache import config_hash

    wrong = imageset_to_arrays(generate(make_config("val", **SMALL, seed=3)))
    save_arrays(tmp_path / f"synth-histo-{config_hash(config)[:24]}.npz", wrong)
    read = load_dataset("synth-histo", "val", cache_dir=str(tmp_path), **SMALL)
    assert torch.equal(read.images, data.images)
