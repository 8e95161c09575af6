"""Run-length codec of the SIIM-ACR pneumothorax masks (relative offsets, column-major).

The SIIM-ACR challenge csv stores each mask as pairs ``start length``, where each start is an
offset counted from the END of the previous run (the first one from pixel 0), over the pixels of a
1024x1024 image flattened column by column (Fortran order). ``"-1"`` means "no finding". An image
can have several rows (one per annotated component); they must be OR-merged, which torchxrayvision's
own loader does not do (it keeps the last row only).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

SIIM_SIZE = 1024
NO_FINDING = "-1"


def rle_decode(rle: str, shape: tuple[int, int] = (SIIM_SIZE, SIIM_SIZE)) -> np.ndarray:
    """Decode one SIIM relative-offset, column-major RLE string.

    Args:
        rle: space-separated ``start length`` pairs; ``"-1"`` or empty means an empty mask.
        shape: ``(height, width)`` of the image the runs cover.

    Returns:
        bool array of ``shape`` (row-major, ``[row, col]``).

    Raises:
        ValueError: odd number of values, negative values, or runs past the end of the image.
    """
    return rle_merge([rle], shape)


def _runs(rle: str, n_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """Absolute ``(starts, ends)`` (end exclusive) of the runs of one RLE string."""
    text = rle.strip()
    if text in ("", NO_FINDING):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values = np.array(text.split(), dtype=np.int64)
    if values.size % 2 or (values < 0).any():
        raise ValueError("RLE must hold non-negative 'start length' pairs")
    offsets, lengths = values[0::2], values[1::2]
    ends = np.cumsum(offsets + lengths)  # each start is relative to the previous run's end
    if ends.size and ends[-1] > n_pixels:
        raise ValueError(f"RLE runs past the end of an image of {n_pixels} pixels")
    return ends - lengths, ends


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D bool mask in the SIIM format (inverse of :func:`rle_decode`).

    Args:
        mask: bool ``[height, width]``.

    Returns:
        The RLE string, or ``"-1"`` for an empty mask.
    """
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    padded = np.concatenate([[False], flat, [False]]).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    starts, ends = change[0::2], change[1::2]
    if starts.size == 0:
        return NO_FINDING
    previous_end = np.concatenate([[0], ends[:-1]])
    pairs = np.stack([starts - previous_end, ends - starts], axis=1).reshape(-1)
    return " ".join(str(int(v)) for v in pairs)


def rle_merge(rles: Iterable[str], shape: tuple[int, int] = (SIIM_SIZE, SIIM_SIZE)) -> np.ndarray:
    """OR-merge the masks of several annotation rows of one image.

    Args:
        rles: RLE strings (``"-1"`` rows contribute nothing).
        shape: ``(height, width)`` of the image.

    Returns:
        bool array of ``shape``: the union of all decoded masks (overlapping runs count once).
    """
    height, width = shape
    edges = np.zeros(height * width + 1, dtype=np.int32)
    for rle in rles:
        starts, ends = _runs(rle, height * width)
        np.add.at(edges, starts, 1)
        np.add.at(edges, ends, -1)
    flat = np.cumsum(edges[:-1]) > 0
    return flat.reshape(width, height).T  # column-major: flat index = col * height + row


def merged_runs(rles: Iterable[str], n_pixels: int = SIIM_SIZE * SIIM_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The union of the runs of several rows, as sorted disjoint absolute ``(starts, ends)``."""
    pairs = [_runs(rle, n_pixels) for rle in rles]
    starts = np.concatenate([p[0] for p in pairs] + [np.zeros(0, np.int64)])
    ends = np.concatenate([p[1] for p in pairs] + [np.zeros(0, np.int64)])
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends) if ends.size else ends
    new_group = np.ones(starts.size, dtype=bool)
    new_group[1:] = starts[1:] > reach[:-1]  # touching runs merge too; harmless
    group = np.cumsum(new_group) - 1
    merged_ends = np.zeros(int(new_group.sum()), np.int64)
    np.maximum.at(merged_ends, group, ends)
    return starts[new_group], merged_ends


def rle_block_coverage(
    rles: Iterable[str], shape: tuple[int, int] = (SIIM_SIZE, SIIM_SIZE), factor: int = 8
) -> np.ndarray:
    """Pixel counts of the OR-merged mask in ``factor x factor`` blocks, without a full decode.

    Equal to ``rle_merge(rles, shape).reshape(h // f, f, w // f, f).sum((1, 3))``, about 50x faster:
    runs are cut at column boundaries and each column interval is spread over its blocks.

    Args:
        rles: RLE strings of one image.
        shape: ``(height, width)``, both divisible by ``factor``.
        factor: block edge in pixels.

    Returns:
        int32 ``[height // factor, width // factor]`` counts in ``[0, factor**2]``.
    """
    height, width = shape
    if height % factor or width % factor:
        raise ValueError(f"shape {shape} is not divisible by factor {factor}")
    starts, ends = merged_runs(rles, height * width)
    first_col, last_col = starts // height, (ends - 1) // height
    n_cols = last_col - first_col + 1  # columns each run touches (column-major order)
    run = np.repeat(np.arange(starts.size), n_cols)
    col = first_col[run] + (np.arange(run.size) - np.repeat(np.cumsum(n_cols) - n_cols, n_cols))
    row0 = np.clip(starts[run] - col * height, 0, height)
    row1 = np.clip(ends[run] - col * height, 0, height)
    edges = np.arange(0, height + 1, factor)
    below = np.clip(edges[None, :] - row0[:, None], 0, (row1 - row0)[:, None])  # covered rows < edge
    per_interval = np.diff(below, axis=1)  # [interval, row block]
    counts = np.zeros((width // factor, height // factor), dtype=np.int64)
    np.add.at(counts, col // factor, per_interval)
    return counts.T.astype(np.int32)
