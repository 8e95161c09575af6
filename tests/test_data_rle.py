"""SIIM-ACR RLE codec, OR-merge of several rows, and the lesion bank built from the real csv."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from harness.data.lesions import build_lesion_bank, load_lesion_bank, read_siim_rles, siim_csv_path
from harness.data.rle import rle_block_coverage, rle_decode, rle_encode, rle_merge

# A 4x4 mask written by hand. Column-major order reads col 0 top-down, then col 1, ...:
# flat = 0001 1100 0000 0111 -> pixels 3,4,5 and 13,14,15 -> runs (3,3) and (13,3);
# relative offsets: the 2nd start counts from the end of the 1st run (6): 13 - 6 = 7.
HAND_MASK = np.array(
    [
        [0, 1, 0, 0],
        [0, 1, 0, 1],
        [0, 0, 0, 1],
        [1, 0, 0, 1],
    ],
    dtype=bool,
)
HAND_RLE = "3 3 7 3"


def test_decode_hand_example() -> None:
    assert np.array_equal(rle_decode(HAND_RLE, (4, 4)), HAND_MASK)


def test_encode_hand_example() -> None:
    assert rle_encode(HAND_MASK) == HAND_RLE


def test_no_finding_and_empty() -> None:
    assert not rle_decode("-1", (4, 4)).any()
    assert not rle_decode(" -1 ", (4, 4)).any()
    assert rle_encode(np.zeros((3, 5), bool)) == "-1"


def test_round_trip_random_non_square() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((13, 7)) < 0.3
        assert np.array_equal(rle_decode(rle_encode(mask), (13, 7)), mask)


def test_or_merge_overlapping_rows() -> None:
    first = "3 3"  # pixels 3, 4, 5
    second = "4 3"  # pixels 4, 5, 6 (overlaps the first)
    third = "14 1"  # pixel 14
    merged = rle_merge([first, second, "-1", third], (4, 4))
    expected = np.zeros(16, bool)
    expected[[3, 4, 5, 6, 14]] = True
    assert np.array_equal(merged, expected.reshape(4, 4).T)
    # the last row alone (torchxrayvision's behaviour) would lose the other rows
    assert merged.sum() > rle_decode(third, (4, 4)).sum()


def test_block_coverage_equals_full_decode() -> None:
    rng = np.random.default_rng(1)
    masks = [rng.random((32, 32)) < p for p in (0.1, 0.5)]
    rles = [rle_encode(m) for m in masks]
    full = rle_merge(rles, (32, 32)).reshape(8, 4, 8, 4).sum((1, 3))
    assert np.array_equal(rle_block_coverage(rles, (32, 32), 4), full)


@pytest.mark.parametrize("bad", ["1 2 3", "-5 2", "10 10"])
def test_invalid_rle_raises(bad: str) -> None:
    with pytest.raises(ValueError):
        rle_decode(bad, (4, 4))


def test_read_csv_with_leading_space_header_groups_rows(tmp_path) -> None:
    path = tmp_path / "mini.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("ImageId, EncodedPixels\n")
        handle.write("a,-1\nb,3 3\nb,4 3\nc,14 1\n")
    groups = read_siim_rles(path)
    assert list(groups) == ["b", "c"]
    assert groups["b"] == ["3 3", "4 3"]


def test_real_bank_merges_all_rows_of_positive_images(tmp_path) -> None:
    path = siim_csv_path()
    groups = read_siim_rles(path)
    assert len(groups) == 2669  # positive images of SIIM-ACR train
    assert sum(len(v) > 1 for v in groups.values()) == 624  # images needing an OR-merge
    bank = load_lesion_bank(tmp_path)
    assert len(bank) == 2669 and bank.coverage.dtype == np.uint8
    assert (bank.coverage.reshape(len(bank), -1).max(1) > 0).all()
    assert len(set(bank.image_ids.tolist())) == len(bank)
    # cached copy (npz, no pickle) loads identically
    again = load_lesion_bank(tmp_path)
    assert np.array_equal(again.coverage, bank.coverage) and again.source_sha256 == bank.source_sha256
    # one multi-row image: the bank holds the union of its rows, not the last row only
    image_id = next(k for k, v in groups.items() if len(v) > 1)
    i = bank.image_ids.tolist().index(image_id)
    last_only = rle_block_coverage(groups[image_id][-1:])
    assert int((bank.coverage[i] > 0).sum()) > int((last_only > 0).sum())


def test_build_bank_from_small_csv(tmp_path) -> None:
    mask = np.zeros((1024, 1024), bool)
    mask[100:300, 50:150] = True  # upper left of the frame
    path = tmp_path / "mini.csv.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(f"ImageId, EncodedPixels\nx,{rle_encode(mask)}\ny,-1\n")
    bank = build_lesion_bank(path)
    assert len(bank) == 1
    expected = mask.reshape(128, 8, 128, 8).mean((1, 3))
    assert np.abs(bank.coverage[0] / 255.0 - expected).max() < 1e-2
    assert abs(bank.area_fraction()[0] - mask.mean()) < 1e-3
