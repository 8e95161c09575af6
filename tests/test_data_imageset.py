"""ImageSet contract: binary and multi-label sets, validation, subset, finding lookup, storage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from harness.data.imageset import ImageSet, check_imageset, empty_masks, normalise_finding
from harness.data.store import imageset_from_arrays, imageset_to_arrays
from harness.registry import UnknownNameError

FINDINGS = ("nodule", "effusion", "pleural_effusion_free", "lung_opacity")


def binary_set(n: int = 6, size: int = 8) -> ImageSet:
    """Built the old way (four positional fields): must still work unchanged."""
    labels = torch.tensor([0, 1] * (n // 2))
    lesion = torch.zeros((n, 1, size, size), dtype=torch.bool)
    lesion[labels == 1, 0, 2:4, 2:4] = True
    return ImageSet(torch.zeros((n, 1, size, size), dtype=torch.uint8), labels, lesion,
                    torch.ones((n, 1, size, size), dtype=torch.bool), patient_ids=torch.arange(n), name="toy/test")


def multi_set(n: int = 6, size: int = 8) -> ImageSet:
    labels = torch.zeros((n, 4), dtype=torch.float32)
    labels[::2, 0] = 1
    labels[1, 3] = float("nan")
    masks = torch.zeros((n, 4, size, size), dtype=torch.bool)
    masks[::2, 0, 1:3, 1:3] = True
    return ImageSet(
        images=torch.arange(n, dtype=torch.uint8)[:, None, None, None].expand(n, 1, size, size).clone(),
        labels=labels,
        lesion_masks=masks,
        lung_masks=None,
        patient_ids=torch.arange(n) // 2,
        name="multi/val",
        finding_names=FINDINGS,
        metadata={"age": torch.linspace(20, 70, n), "sex": torch.arange(n) % 2},
        image_ids=tuple(f"img{i}.png" for i in range(n)),
    )


def test_binary_defaults_are_backwards_compatible() -> None:
    data = binary_set()
    assert not data.multilabel and data.n_findings == 1 and data.finding_names == ("finding",)
    assert data.metadata == {} and data.image_ids is None
    assert data.finding_index("finding") == 0
    assert torch.equal(data.finding_labels("finding"), data.labels)
    assert data.for_finding("finding").labels.equal(data.labels)


def test_multilabel_contract_and_subset_carries_everything() -> None:
    data = multi_set()
    assert data.multilabel and len(data) == 6 and data.n_findings == 4
    part = data.subset(torch.tensor([4, 0]))
    assert part.finding_names == FINDINGS and part.lung_masks is None
    assert torch.equal(part.labels, data.labels[[4, 0]])
    assert torch.equal(part.lesion_masks, data.lesion_masks[[4, 0]])
    assert torch.equal(part.metadata["age"], data.metadata["age"][[4, 0]])
    assert part.image_ids == ("img4.png", "img0.png")
    flags = data.subset(data.labels[:, 0] == 1)
    assert flags.image_ids == ("img0.png", "img2.png", "img4.png") and torch.equal(flags.patient_ids, torch.tensor([0, 1, 2]))


def test_finding_index_normalises_and_aliases() -> None:
    data = multi_set()
    assert data.finding_index("Effusion") == 1
    assert data.finding_index("Lung Opacity") == 3
    assert data.finding_index("Airspace Opacity") == 3  # CheXlocalize's name for CheXpert's Lung Opacity
    assert normalise_finding("Pleural_Thickening") == "pleural_thickening"


def test_finding_index_error_lists_the_findings() -> None:
    with pytest.raises(KeyError) as error:
        multi_set().finding_index("cardiomegaly")
    assert isinstance(error.value, UnknownNameError)
    assert "multi/val has no finding 'cardiomegaly'" in str(error.value)
    assert "nodule, effusion" in str(error.value)


def test_for_finding_gives_a_binary_view_and_drops_unknown_labels() -> None:
    data = multi_set()
    nodule = data.for_finding("nodule")
    assert not nodule.multilabel and nodule.labels.dtype == torch.int64
    assert nodule.lesion_masks.shape == (6, 1, 8, 8) and nodule.finding_names == ("nodule",)
    assert nodule.labels.tolist() == [1, 0, 1, 0, 1, 0]
    opacity = data.for_finding("lung_opacity")
    assert len(opacity) == 5 and "img1.png" not in opacity.image_ids  # NaN = unknown: dropped
    column = data.finding_labels("lung_opacity")
    assert column.dtype == torch.float32 and math.isnan(float(column[1]))
    assert data.finding_labels("nodule").dtype == torch.int64


@pytest.mark.parametrize(
    "change, message",
    [
        ({"labels": torch.zeros(6, 3)}, "labels must be"),
        ({"labels": torch.zeros(6, dtype=torch.int32)}, "labels must be"),
        ({"lesion_masks": torch.zeros((6, 1, 8, 8), dtype=torch.bool)}, "lesion_masks must be bool"),
        ({"images": torch.zeros((6, 3, 8, 8), dtype=torch.uint8)}, "images must be uint8"),
        ({"metadata": {"age": torch.zeros(5)}}, "metadata['age']"),
        ({"finding_names": ("a", "a", "b", "c")}, "distinct"),
        ({"image_ids": ("x",)}, "image_ids has 1 entries"),
    ],
)
def test_contract_violations_are_named(change: dict, message: str) -> None:
    data = multi_set()
    fields = {k: getattr(data, k) for k in ("images", "labels", "lesion_masks", "lung_masks", "patient_ids",
                                              "name", "finding_names", "metadata", "image_ids")}
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ImageSet(**{**fields, **change})


def test_empty_masks_take_no_memory_and_index_normally() -> None:
    masks = empty_masks(10_000, 14, 224)
    assert masks.shape == (10_000, 14, 224, 224) and masks.stride() == (0, 0, 0, 0)
    assert not masks[[3, 7]].any() and masks[[3, 7]].shape == (2, 14, 224, 224)


def test_store_round_trip_binary_multilabel_and_broadcast_masks() -> None:
    for data in (binary_set(), multi_set()):
        data.config = {"k": 1}
        back = imageset_from_arrays(imageset_to_arrays(data), {"k": 1})
        check_imageset(back)
        assert torch.equal(back.images, data.images) and back.finding_names == data.finding_names
        assert torch.equal(back.labels.nan_to_num(-1), data.labels.nan_to_num(-1))
        assert torch.equal(back.lesion_masks, data.lesion_masks) and back.image_ids == data.image_ids
        assert back.metadata.keys() == data.metadata.keys()
        assert (back.lung_masks is None) == (data.lung_masks is None)
    empty = multi_set()
    empty.lesion_masks = empty_masks(6, 4, 8)
    arrays = imageset_to_arrays(empty)
    assert "lesion_masks" not in arrays and int(arrays["lesion_channels"]) == 4
    assert imageset_from_arrays(arrays, {}).lesion_masks.stride() == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="config differs"):
        imageset_from_arrays(arrays, {"other": True})
    assert all(np.asarray(v).dtype != object for v in arrays.values())
