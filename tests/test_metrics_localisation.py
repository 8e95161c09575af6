"""Localisation metrics: hand-computed 4x4 references, loop references, cv2's Otsu, CheXlocalize, properties."""

from __future__ import annotations

import math
from fractions import Fraction
from functools import partial

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from harness.metrics import (
    diffgradcam,
    ehr_auc,
    ehr_curve,
    energy_pointing_game,
    iou,
    localisation_auc,
    minmax_maps,
    miou,
    otsu_levels,
    pointing_game,
    relevance_mass,
    relevance_rank,
    segment_maps,
    segmentation_iou,
    threshold_maps,
    top_k_intersection,
)

FAST = settings(max_examples=40, deadline=None)

# The hand-worked example: a [0,1] map and a mask on the top-right 2x2 block.
MAP = torch.tensor([[0.00, 0.00, 0.25, 0.50],
                    [0.00, 0.25, 0.50, 1.00],
                    [0.00, 0.00, 0.75, 0.50],
                    [0.00, 0.00, 0.00, 0.25]]).view(1, 1, 4, 4)
MASK = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
MASK[..., :2, 2:] = True


def test_diffgradcam_by_hand():
    # inside: 0.25 + 0.5 + 0.5 + 1.0 = 2.25 over 4 -> 27/48
    # outside: 0.25 + 0.75 + 0.5 + 0.25 = 1.75 over 12 -> 7/48
    assert diffgradcam(MAP, MASK).item() == pytest.approx(20 / 48, abs=1e-12)


def test_ehr_auc_by_hand():
    # thresholds 0, .25, .5, .75, 1 -> pixels reaching t (inside/all): 4/16, 4/8, 3/5, 1/2, 1/1
    curve = ehr_curve(MAP, MASK, n_thresholds=4)[0]
    assert torch.allclose(curve, torch.tensor([0.25, 0.5, 0.6, 0.5, 1.0], dtype=torch.float64))
    # trapezoid, spacing 1/4: (0.375 + 0.55 + 0.55 + 0.75) / 4
    assert ehr_auc(MAP, MASK, n_thresholds=4).item() == pytest.approx(0.55625, abs=1e-12)


def test_pointing_game_by_hand():
    assert pointing_game(MAP, MASK).item() == 1.0  # the maximum 1.0 sits at (1, 3), inside
    tied = MAP.clone()
    tied[0, 0, 0, 0] = 1.0  # an earlier, outside maximum: the first arg-max decides -> miss
    assert pointing_game(tied, MASK).item() == 0.0
    assert pointing_game(MAP, MASK.roll(2, dims=2)).item() == 0.0


def test_iou_by_hand():
    # > 0.5: {(1,3), (2,2)}; intersection 1, union 2 + 4 - 1 = 5
    assert iou(MAP, MASK, threshold=0.5).item() == pytest.approx(0.2)
    # > 0.25: {(0,3), (1,2), (1,3), (2,2), (2,3)}; intersection 3, union 5 + 4 - 3 = 6
    assert iou(MAP, MASK, threshold=0.25).item() == pytest.approx(0.5)
    # Otsu on levels floor(255 v) = {0: 8, 63: 3, 127: 3, 191: 1, 255: 1}: between-class variance is
    # 4032 (k=0), 4720 (k=63), 3634 (k=127), 2445 (k=191) -> threshold 63, the same segmentation as > 0.25
    assert otsu_levels((255 * MAP.flatten(1)).floor().long()).item() == 63
    assert iou(MAP, MASK, threshold="otsu").item() == pytest.approx(0.5)


def test_relevance_mass_and_rank_by_hand():
    signed = MAP - 0.25  # positive part: inside 0 + .25 + .25 + .75 = 1.25, outside .5 + .25 = .75
    assert relevance_mass(signed, MASK).item() == pytest.approx(1.25 / 2.0)
    # top-4 pixels (stable ties): 1.0 (1,3), .75 (2,2), .5 (0,3), .5 (1,2) -> 3 of 4 inside
    assert relevance_rank(MAP, MASK).item() == pytest.approx(0.75)


def test_new_metrics_by_hand():
    # all positive energy 4.0, inside 0.25 + 0.5 + 0.5 + 1.0 = 2.25 (Score-CAM's energy-based pointing game)
    assert energy_pointing_game(MAP, MASK).item() == pytest.approx(2.25 / 4.0)
    # outside values: eight 0, two 0.25, one 0.5, one 0.75. Pairs won (ties 1/2) over 4 x 12:
    # 0.25 -> 8 + 1, 0.5 -> 10.5 (twice), 1.0 -> 12; (9 + 21 + 12) / 48
    assert localisation_auc(MAP, MASK).item() == pytest.approx(42 / 48)
    # top-2: 1.0 (1,3) inside, 0.75 (2,2) outside; top-4 adds the first two 0.5s (flat 3, 6): both inside
    assert top_k_intersection(MAP, MASK, k=2).item() == 0.5
    assert top_k_intersection(MAP, MASK, k=4).item() == 0.75
    assert top_k_intersection(MAP, MASK, k=2, concept_influence=True).item() == pytest.approx(0.5 * 16 / 4)
    assert top_k_intersection(MAP, MASK, k=16).item() == 0.25  # every pixel: the mask's area fraction
    with pytest.raises(ValueError, match="k must"):
        top_k_intersection(MAP, MASK, k=17)
    # the map is already min-max and 4x4: segmentation_iou at the mask's size equals iou
    assert segmentation_iou(MAP, MASK).item() == pytest.approx(iou(MAP, MASK).item())
    assert segmentation_iou(3 * MAP - 7, MASK, threshold=0.5).item() == pytest.approx(0.2)  # min-max first
    assert miou(torch.cat([MAP, MAP]), torch.cat([MASK, torch.zeros_like(MASK)])).item() == pytest.approx(0.5)


def test_segment_maps_resizes_bilinearly_and_normalises():
    small = torch.tensor([[0.0, 1.0], [2.0, 3.0]]).view(1, 1, 2, 2)
    up = F.interpolate(small.double(), size=(4, 4), mode="bilinear", align_corners=False)
    unit = (up - up.min()) / (up.max() - up.min())
    assert torch.equal(segment_maps(small, size=(4, 4), threshold=0.5), unit > 0.5)
    assert segment_maps(small[:, 0], size=(4, 4), threshold=0.5).shape == (1, 4, 4)  # [B,h,w] input
    assert torch.equal(minmax_maps(torch.full((2, 1, 3, 3), 5.0)), torch.zeros(2, 1, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="B,C,h,w"):
        segment_maps(torch.rand(2, 5), threshold=0.5)


def test_empty_full_and_nan_edge_cases():
    empty = torch.zeros_like(MASK)
    metrics = (diffgradcam, ehr_auc, pointing_game, iou, relevance_mass, relevance_rank, energy_pointing_game,
               localisation_auc, partial(top_k_intersection, k=3), segmentation_iou)
    for metric in metrics:
        assert math.isnan(metric(MAP, empty).item()), metric
    assert math.isnan(miou(MAP, empty).item())
    assert math.isnan(diffgradcam(MAP, torch.ones_like(MASK)).item())  # no outside
    assert math.isnan(localisation_auc(MAP, torch.ones_like(MASK)).item())  # one class only
    with_nan = MAP.clone()
    with_nan[0, 0, 3, 0] = float("nan")
    for metric in metrics:
        assert math.isnan(metric(with_nan, MASK).item()), metric
    assert math.isnan(segmentation_iou(torch.full_like(MAP, 0.3), MASK).item())  # constant map: empty segmentation
    zeros = torch.zeros_like(MAP)  # unit_view of a constant map
    assert diffgradcam(zeros, MASK).item() == 0.0
    assert ehr_auc(zeros, MASK, n_thresholds=4).item() == pytest.approx(0.25 / 8)
    assert math.isnan(iou(zeros, MASK).item())  # empty segmentation
    assert math.isnan(relevance_mass(zeros, MASK).item())  # no positive relevance
    with pytest.raises(ValueError, match=r"\[0,1\]"):
        diffgradcam(MAP * 2, MASK)
    with pytest.raises(ValueError, match="size per image"):
        diffgradcam(MAP, MASK[..., :2])


def random_batch(seed: int, b: int = 5, h: int = 12, w: int = 9, levels: int | None = None):
    g = torch.Generator().manual_seed(seed)
    maps = torch.rand(b, 1, h, w, generator=g)
    if levels:
        maps = (maps * levels).floor() / levels  # many ties
    masks = torch.rand(b, 1, h, w, generator=g) < torch.rand(b, 1, 1, 1, generator=g)
    masks[:, :, 0, 0] = True  # never empty
    masks[:, :, -1, -1] = False  # never full
    return maps, masks


def ehr_auc_loop(m: np.ndarray, s: np.ndarray, n: int) -> float:
    ehr = []
    for k in range(n + 1):
        above = m >= k / n
        ehr.append((above & s).sum() / above.sum() if above.any() else 0.0)
    return sum((ehr[k] + ehr[k + 1]) / 2 / n for k in range(n))


@FAST
@given(st.integers(0, 10_000), st.sampled_from([None, 4, 10]), st.sampled_from([1, 7, 20]))
def test_batched_metrics_equal_loop_references(seed, levels, n_thresholds):
    maps, masks = random_batch(seed, levels=levels)
    got_ehr = ehr_auc(maps, masks, n_thresholds=n_thresholds)
    got_diff = diffgradcam(maps, masks)
    for i in range(maps.shape[0]):
        m, s = maps[i].double().numpy().ravel(), masks[i].numpy().ravel()
        assert got_ehr[i].item() == pytest.approx(ehr_auc_loop(m, s, n_thresholds), abs=1e-12)
        assert got_diff[i].item() == pytest.approx(m[s].mean() - m[~s].mean(), abs=1e-12)


def exact_between_class_variance(u8: np.ndarray, k: int) -> Fraction:
    """Otsu's criterion up to the constant 1/N^2, in exact rational arithmetic."""
    v = u8.ravel().astype(np.int64)
    n, n1, m1, total = v.size, int((v <= k).sum()), int(v[v <= k].sum()), int(v.sum())
    return Fraction(-1) if n1 in (0, n) else Fraction((n * m1 - n1 * total) ** 2, n1 * (n - n1))


@FAST
@given(st.integers(0, 10_000), st.sampled_from([None, 2, 3, 50]), st.sampled_from([(16, 16), (3, 3), (7, 9)]))
def test_otsu_segmentation_equals_opencv(seed, levels, shape):
    """Same segmentation as cv2's THRESH_OTSU, except on exact ties, where both thresholds are optimal.

    (cv2 breaks exact ties by its own rounding: on 3000 random batches all 42 differences were exact ties.)
    """
    maps, _ = random_batch(seed, b=4, h=shape[0], w=shape[1], levels=levels)
    ours = threshold_maps(maps, threshold="otsu")
    ours_level = otsu_levels((255 * maps.flatten(1)).floor().long())
    for i in range(maps.shape[0]):
        u8 = np.uint8(255 * maps[i, 0].numpy())
        level, seg = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        if not np.array_equal(ours[i, 0].numpy(), seg > 0):
            assert exact_between_class_variance(u8, int(level)) == exact_between_class_variance(
                u8, int(ours_level[i]))


@FAST
@given(st.integers(0, 10_000), st.sampled_from([None, 4]))
def test_ranges(seed, levels):
    maps, masks = random_batch(seed, levels=levels)
    d = diffgradcam(maps, masks)
    assert ((d >= -1) & (d <= 1)).all()
    for values in (ehr_auc(maps, masks, n_thresholds=10), iou(maps, masks), iou(maps, masks, threshold=0.3),
                   relevance_mass(maps - 0.5, masks), relevance_rank(maps, masks), localisation_auc(maps, masks),
                   energy_pointing_game(maps - 0.5, masks), top_k_intersection(maps, masks, k=7),
                   segmentation_iou(maps[..., ::2, ::3], masks), miou(maps, masks, threshold=0.3)[None]):
        finite = values[~values.isnan()]
        assert ((finite >= 0) & (finite <= 1)).all()


@FAST
@given(st.integers(0, 10_000))
def test_extremes_of_the_ranges(seed):
    _, masks = random_batch(seed)
    perfect = masks.float()
    assert torch.allclose(diffgradcam(perfect, masks), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(diffgradcam(1 - perfect, masks), -torch.ones(5, dtype=torch.float64))
    assert torch.allclose(relevance_mass(perfect, masks), torch.ones(5, dtype=torch.float64))
    assert torch.allclose(iou(perfect, masks, threshold=0.5), torch.ones(5, dtype=torch.float64))


@FAST
@given(st.integers(0, 10_000))
def test_pointing_game_invariant_to_increasing_rescaling(seed):
    maps, masks = random_batch(seed, levels=8)  # dyadic values with ties: the rescalings below are exact
    signed = maps - 0.5
    expected = pointing_game(signed, masks)
    for rescaled in (8 * signed - 3, signed.pow(3), signed.pow(5) + signed):
        assert torch.equal(pointing_game(rescaled, masks), expected)


STRICTLY_INCREASING = (lambda x: 8 * x - 3, lambda x: x.pow(3), lambda x: x.pow(5) + x)


@FAST
@given(st.integers(0, 10_000))
def test_rank_metrics_invariant_to_strictly_increasing_rescaling(seed):
    maps, masks = random_batch(seed, levels=8)  # dyadic values with ties: the rescalings below are exact
    signed = (maps - 0.5).double()
    for metric in (relevance_rank, localisation_auc, partial(top_k_intersection, k=9),
                   partial(top_k_intersection, k=30, concept_influence=True)):
        expected = metric(signed, masks)
        for rescale in STRICTLY_INCREASING:
            assert torch.equal(metric(rescale(signed), masks), expected), metric


@FAST
@given(st.integers(0, 10_000), st.sampled_from([None, 5]))
def test_localisation_auc_equals_sklearn_and_flips_with_the_sign(seed, levels):
    maps, masks = random_batch(seed, levels=levels)
    got = localisation_auc(maps, masks)
    for i in range(maps.shape[0]):
        expected = roc_auc_score(masks[i].numpy().ravel(), maps[i].double().numpy().ravel())
        assert got[i].item() == pytest.approx(expected, abs=1e-12)
    assert torch.allclose(localisation_auc(-maps, masks), 1 - got, atol=1e-12)


@FAST
@given(st.integers(0, 10_000))
def test_top_k_and_energy_equal_loop_references(seed):
    maps, masks = random_batch(seed, levels=6)
    for k in (1, 5, 40):
        got = top_k_intersection(maps, masks, k=k)
        for i in range(maps.shape[0]):
            m, s = maps[i].numpy().ravel(), masks[i].numpy().ravel()
            top = sorted(range(m.size), key=lambda j: (-m[j], j))[:k]  # stable: lower index first on ties
            assert got[i].item() == pytest.approx(s[top].mean(), abs=1e-12)
    signed = maps - 0.5
    energy = energy_pointing_game(signed, masks)
    positive = signed.clamp_min(0)
    expected = (positive * masks).flatten(1).sum(1) / positive.flatten(1).sum(1)
    assert torch.allclose(energy, expected.double(), atol=1e-6)


@FAST
@given(st.integers(0, 10_000))
def test_iou_is_symmetric_in_the_two_masks(seed):
    _, a = random_batch(seed)
    _, b = random_batch(seed + 1)
    assert torch.equal(iou(a.double(), b, threshold=0.5), iou(b.double(), a, threshold=0.5))


def chexlocalize_iou(cam: torch.Tensor, gt: np.ndarray) -> tuple[float, int]:
    """The CheXlocalize pipeline for one map: F.interpolate bilinear -> min-max -> uint8 -> cv2 Otsu -> IoU."""
    resized = F.interpolate(cam[None].double(), size=gt.shape, mode="bilinear", align_corners=False)[0, 0]
    shifted = resized - resized.min()
    u8 = np.uint8((255 * (shifted / shifted.max())).numpy())
    level, seg = cv2.threshold(u8, 0, int(u8.max()), cv2.THRESH_OTSU)
    seg = seg > 0
    if not seg.any() or not gt.any():
        return math.nan, int(level)
    return (seg & gt).sum() / (seg | gt).sum(), int(level)


@FAST
@given(st.integers(0, 10_000), st.sampled_from([(3, 4), (7, 7), (12, 9)]))
def test_segmentation_iou_equals_the_chexlocalize_pipeline(seed, small):
    g = torch.Generator().manual_seed(seed)
    cams = torch.randn(4, 1, *small, generator=g)  # raw, signed, low resolution
    _, masks = random_batch(seed, b=4, h=24, w=18)
    got = segmentation_iou(cams, masks)
    ours_levels = otsu_levels((255 * minmax_maps(F.interpolate(cams.double(), size=(24, 18), mode="bilinear",
                                                                  align_corners=False)).flatten(1)).floor().long())
    for i in range(4):
        expected, level = chexlocalize_iou(cams[i], masks[i, 0].numpy())
        if not (math.isnan(expected) and math.isnan(got[i].item())) and got[i].item() != pytest.approx(expected):
            u8 = np.uint8(255 * minmax_maps(F.interpolate(cams[i:i + 1].double(), size=(24, 18), mode="bilinear",
                                                           align_corners=False))[0, 0].numpy())
            assert exact_between_class_variance(u8, level) == exact_between_class_variance(u8, int(ours_levels[i]))
    assert miou(cams, masks).item() == pytest.approx(float(np.nanmean(got.numpy())))


# --- lesion focus: relevance mass against the same map smoothed at the lesion's scale


def _sigma(mask: np.ndarray) -> float:
    return min(max(math.sqrt(mask.sum() / math.pi), 1.0), mask.shape[-1] / 6.0)


def _lesion_focus_reference(m: np.ndarray, mask: np.ndarray, radius: int) -> float:
    """scipy's Gaussian filter ('mirror' = torch's reflect padding, truncated at the batch's radius)."""
    from scipy.ndimage import gaussian_filter

    sigma = _sigma(mask)
    smoothed = gaussian_filter(m.astype(np.float64), sigma, mode="mirror", truncate=(radius + 0.25) / sigma)
    mass = lambda x: (np.clip(x, 0, None) * mask).sum() / np.clip(x, 0, None).sum()  # noqa: E731
    return float(mass(m) / mass(smoothed))


def test_lesion_focus_matches_a_scipy_reference():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 1, 32, 32, generator=g) ** 3
    masks = torch.zeros(4, 1, 32, 32, dtype=torch.bool)
    masks[0, 0, 4:10, 4:10] = True
    masks[1, 0, 20:30, 2:6] = True
    masks[2, 0, 15:17, 15:17] = True
    masks[3, 0, 2:30, 2:30] = True   # a large lesion: sigma capped at 1/6 of the side
    maps[1, 0, 20:30, 2:6] += 2.0
    from harness.metrics import lesion_focus

    got = lesion_focus(maps, masks)
    radius = math.ceil(3 * max(_sigma(k[0].numpy()) for k in masks))  # one kernel width per batch
    want = [_lesion_focus_reference(maps[i, 0].numpy(), masks[i, 0].numpy(), radius) for i in range(4)]
    assert got.tolist() == pytest.approx(want, rel=1e-6)  # the unsmoothed mass is taken in float32
    assert got[1] > 1.5  # heat concentrated on its lesion


def test_lesion_focus_is_one_without_lesion_scale_structure_and_high_on_the_lesion():
    from harness.metrics import lesion_focus
    from harness.data.texture import gaussian_blur

    masks = torch.zeros(3, 1, 64, 64, dtype=torch.bool)
    masks[:, 0, 20:30, 35:45] = True
    uniform = torch.ones(3, 1, 64, 64)
    assert lesion_focus(uniform, masks).tolist() == pytest.approx([1.0] * 3)
    on_lesion = masks.float() + 0.05 * torch.rand(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    spread = gaussian_blur(on_lesion, torch.full((3,), 64 / 6.0))
    beside = on_lesion.roll(16, dims=-1)
    focus = lesion_focus(on_lesion, masks)
    assert (focus > 2.0).all()
    assert (lesion_focus(spread, masks) < 1.25).all()     # already smooth: smoothing again changes little
    assert (lesion_focus(beside, masks) < 0.75).all()     # heat next to the lesion: below 1
    assert torch.allclose(lesion_focus(7.0 * on_lesion, masks), focus)  # scale-free
    assert lesion_focus(on_lesion, torch.zeros_like(masks)).isnan().all()
