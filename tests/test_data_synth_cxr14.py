"""synth-cxr14: multi-label contract, determinism, masks, co-occurrence, metadata, learnability proxy."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import harness.data.synth_cxr14 as module
from harness.data import list_datasets, load_dataset
from harness.data.splits import check_patient_disjoint
from harness.data.synth_cxr14 import generate, make_config, synth_cxr14
from harness.data.texture import dilate
from harness.data.world14 import FINDINGS, build_world14

SMALL = {"size": 64, "n_patients": 60, "seed": 2}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("xai-cache14"))


@pytest.fixture(scope="module")
def train(cache):
    """About 600 images: enough positives of every finding for the statistics below."""
    return synth_cxr14("train", size=64, n_patients=300, seed=1, cache_dir=cache)


@pytest.fixture(scope="module")
def world():
    return build_world14(0, 4000, make_config("train")["prevalence"])


def test_registered_and_contract(cache) -> None:
    assert "synth-cxr14" in list_datasets()
    data = load_dataset("synth-cxr14", "val", cache_dir=cache, **SMALL)
    n = len(data)
    assert data.name == "synth-cxr14/val" and data.multilabel and data.finding_names == FINDINGS
    assert {"nodule", "effusion", "cardiomegaly", "pneumothorax"} <= set(FINDINGS)
    assert data.images.shape == (n, 1, 64, 64) and data.images.dtype == torch.uint8
    assert data.labels.shape == (n, len(FINDINGS)) and data.labels.dtype == torch.float32
    assert set(data.labels.unique().tolist()) <= {0.0, 1.0}
    assert data.lesion_masks.shape == (n, len(FINDINGS), 64, 64) and data.lesion_masks.dtype == torch.bool
    assert data.lung_masks.shape == (n, 1, 64, 64)
    assert data.metadata["age"].dtype == torch.float32 and data.metadata["sex"].dtype == torch.int64


def test_same_seed_identical_other_seed_different(cache) -> None:
    config = make_config("test", **SMALL)
    a, b = generate(config, cache_dir=cache), generate(config, cache_dir=cache)
    for field in ("images", "labels", "lesion_masks", "lung_masks", "patient_ids"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert all(torch.equal(a.metadata[k], b.metadata[k]) for k in a.metadata)
    other = generate(make_config("test", **{**SMALL, "seed": 3}), cache_dir=cache)
    assert a.images.shape != other.images.shape or not torch.equal(a.images, other.images)


def test_cache_hit_equals_generation(cache, monkeypatch, caplog) -> None:
    fresh = synth_cxr14("test", cache_dir=cache, **SMALL)
    monkeypatch.setattr(module, "generate", lambda *a, **k: pytest.fail("cache miss"))
    cached = synth_cxr14("test", cache_dir=cache, **SMALL)
    for field in ("images", "labels", "lesion_masks", "lung_masks", "patient_ids"):
        assert torch.equal(getattr(fresh, field), getattr(cached, field)), field
    assert cached.finding_names == fresh.finding_names and cached.config == fresh.config
    assert torch.equal(cached.metadata["age"], fresh.metadata["age"])


def test_masks_match_labels_and_lie_inside(train) -> None:
    area = train.lesion_masks.flatten(2).sum(2)  # [N, K]
    positive = train.labels.bool()
    assert (area[positive] > 0).all() and (area[~positive] == 0).all()
    lung = train.lung_masks[:, 0]
    for name in ("nodule", "effusion", "pneumothorax"):
        mask = train.lesion_masks[:, FINDINGS.index(name)]
        outside = (mask & ~lung).flatten(1).sum(1).float() / mask.flatten(1).sum(1).clamp(min=1)
        assert float(outside.max()) < 0.2, name  # measured 0: nodule centres keep a margin from the edge
    heart = train.lesion_masks[:, FINDINGS.index("cardiomegaly")]
    assert not (heart[..., :, :8] | heart[..., :, -8:]).any()  # the heart is central


def test_co_occurrence_no_finding_and_patient_persistence(world) -> None:
    labels = world.labels
    rate = labels.mean(0)
    for k, name in enumerate(FINDINGS):
        assert abs(rate[k] - make_config("train")["prevalence"][name]) < 0.03, name
    no_finding = (labels.sum(1) == 0).mean()
    assert 0.3 < no_finding < 0.55
    assert (labels.sum(1) >= 2).mean() > 0.08  # several findings per image
    eff, card = labels[:, FINDINGS.index("effusion")], labels[:, FINDINGS.index("cardiomegaly")]
    assert eff[card == 1].mean() > eff[card == 0].mean() + 0.15  # heart failure couples them
    age = world.demographics["age"][world.image_patient]
    assert card[age > 60].mean() > card[age < 35].mean()
    first = np.r_[True, world.image_patient[1:] != world.image_patient[:-1]]
    follow = ~first
    same = labels[follow] == labels[np.flatnonzero(follow) - 1]  # an image vs the previous of its patient
    assert same.mean() > (labels[1:] == labels[:-1]).mean()


def test_metadata_ranges(train) -> None:
    age, sex = train.metadata["age"], train.metadata["sex"]
    assert 12 <= float(age.min()) and float(age.max()) <= 95
    assert 35 < float(age.mean()) < 60
    assert set(sex.unique().tolist()) == {0, 1} and 0.4 < float(sex.float().mean()) < 0.75
    for pid in train.patient_ids.unique()[:20]:
        rows = train.patient_ids == pid
        assert age[rows].unique().numel() == 1 and sex[rows].unique().numel() == 1


def test_patient_wise_splits(cache) -> None:
    ids = {s: synth_cxr14(s, cache_dir=cache, **SMALL).patient_ids.numpy() for s in ("train", "val", "test")}
    check_patient_disjoint(ids)


def _mean_in(x: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    region = region.float()
    return (x * region).flatten(1).sum(1) / region.flatten(1).sum(1).clamp(min=1)


def test_each_finding_changes_pixel_statistics(train) -> None:
    """Learnability proxy: inside its mask a finding is brighter (nodule, effusion, heart) or darker
    (pneumothorax) than the same pixels of images without it; and than the adjacent lung."""
    x = train.as_float()[:, 0]
    for k, name in enumerate(FINDINGS):
        pos, neg = train.labels[:, k] == 1, train.labels[:, k] == 0
        assert pos.sum() >= 30, name
        masks = train.lesion_masks[pos, k]
        own = _mean_in(x[pos], masks)
        same_pixels_elsewhere = torch.stack([_mean_in(x[neg], m.expand(int(neg.sum()), -1, -1)).mean() for m in masks])
        gap = float((own - same_pixels_elsewhere).mean())
        if name == "pneumothorax":
            assert gap < -0.03, (name, gap)
        else:
            assert gap > 0.03, (name, gap)
    for name, sign in (("nodule", 1), ("pneumothorax", -1)):
        k = FINDINGS.index(name)
        pos = train.labels[:, k] == 1
        mask = train.lesion_masks[pos, k][:, None]
        ring = (dilate(mask.float(), 2) - mask.float()).clamp(min=0) * train.lung_masks[pos]
        contrast = _mean_in(x[pos][:, None], mask) - _mean_in(x[pos][:, None], ring)
        assert float((sign * contrast > 0).float().mean()) > 0.7, name


def test_shortcut_tied_to_a_finding_and_decorrelated_split(cache) -> None:
    shortcuts = {"chest_drain": {"p_pos": 0.9, "p_neg": 0.05}, "marker": {"on": "male", "p_pos": 0.8, "p_neg": 0.1}}
    opts = {"size": 64, "n_patients": 200, "seed": 4, "shortcuts": shortcuts, "cache_dir": cache}
    data = synth_cxr14("train", **opts)
    assert set(data.artifact_masks) == {"chest_drain", "marker"}
    ptx = data.labels[:, FINDINGS.index("pneumothorax")] == 1
    drain = data.has_artifact("chest_drain").float()
    assert float(drain[ptx].mean()) > 0.75 and float(drain[~ptx].mean()) < 0.15
    marker = data.has_artifact("marker").float()
    male = data.metadata["sex"] == 1
    assert float(marker[male].mean()) > 0.6 and float(marker[~male].mean()) < 0.25
    decorrelated = synth_cxr14("test_decorrelated", **opts)
    assert not set(decorrelated.patient_ids.tolist()) & set(data.patient_ids.tolist())
    assert 0.25 < float(decorrelated.has_artifact("chest_drain").float().mean()) < 0.75


def test_size_224_profile(cache) -> None:
    data = synth_cxr14("val", size=224, n_patients=6, seed=0, cache_dir=cache)
    assert data.images.shape[1:] == (1, 224, 224) and data.lesion_masks.shape[1:] == (len(FINDINGS), 224, 224)
    area = data.lesion_masks.flatten(2).sum(2)
    assert (area[data.labels.bool()] > 0).all()


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="unknown finding"):
        make_config("train", prevalence={"hernia": 0.1})
    with pytest.raises(ValueError, match="prevalence must lie"):
        make_config("train", prevalence={"nodule": 1.5})
    with pytest.raises(ValueError, match="'on' must be one of"):
        make_config("train", shortcuts={"marker": {"on": "age", "p_pos": 0.5, "p_neg": 0.1}})
    with pytest.raises(ValueError, match="chest_drain"):
        make_config("train", shortcuts={"pacemaker": {"p_pos": 0.5, "p_neg": 0.1}})
    with pytest.raises(ValueError, match="valid splits"):
        make_config("training")


def test_prevalence_option_changes_labels_only_where_asked(caplog) -> None:
    base = build_world14(5, 500, make_config("train")["prevalence"])
    more = build_world14(5, 500, make_config("train", prevalence={"nodule": 0.5})["prevalence"])
    k = FINDINGS.index("nodule")
    assert more.labels[:, k].mean() > base.labels[:, k].mean() + 0.2
    assert np.array_equal(base.image_patient, more.image_patient)
    with caplog.at_level(logging.WARNING):
        assert make_config("val", prevalence={"nodule": 0.5})["prevalence"]["nodule"] == 0.5
