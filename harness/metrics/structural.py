"""Structural similarity of two batches of maps: SSIM and HOG correlation, as in Adebayo et al. 2018.

Both reproduce scikit-image 0.26 (``skimage.metrics.structural_similarity``, ``skimage.feature.hog``)
on every image of a batch at once, in float64 torch on the maps' device. Maps are ``[B,H,W]`` or
``[B,C,H,W]`` (explainer maps are ``[B,1,H,W]``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from harness.metrics.registry import register_metric
from harness.metrics.similarity import pearson

BlockNorm = Literal["L1", "L1-sqrt", "L2", "L2-Hys"]

_GAUSSIAN_TRUNCATE = 3.5  # skimage's SSIM truncates its Gaussian window at 3.5 sigma
_HOG_EPS = 1e-5  # skimage's block-normalisation epsilon


@register_metric("ssim", category="similarity", higher_is_better=None)
def ssim(a: torch.Tensor, b: torch.Tensor, *, win_size: int | None = None, gaussian_weights: bool = False,
         sigma: float = 1.5, data_range: float | torch.Tensor | None = None, k1: float = 0.01,
         k2: float = 0.03, use_sample_covariance: bool = True) -> torch.Tensor:
    """Mean structural similarity index per image (Wang et al., IEEE TIP 2004).

    One of the three similarities of the model-randomisation sanity check (Adebayo et al., "Sanity
    Checks for Saliency Maps", NeurIPS 2018). Equals ``skimage.metrics.structural_similarity`` with
    the same options image by image (``channel_axis`` set for ``C > 1``: the mean over channels),
    including its windows (uniform ``win_size`` box, default 7; or a Gaussian of ``sigma`` truncated
    at 3.5 sigma, window ``2*int(3.5*sigma+0.5)+1``), scipy's ``reflect`` borders and the crop of
    ``(win_size-1)//2`` border pixels before the mean.

    ``data_range=None`` uses each pair's joint range ``max(a, b) - min(a, b)`` (what Quantus' ``ssim``
    similarity passes to skimage); scikit-image itself demands an explicit range for float input.
    Compare raw maps with the per-pair range, or [0,1] views with ``data_range=1``.

    Edge cases: identical non-constant maps score 1 (and SSIM is symmetric); equal constant maps have a
    zero joint range, so SSIM is 0/0 and the result is NaN (no structure to compare, as Spearman);
    a map with a NaN gives NaN.

    Args:
        a: ``[B,H,W]`` or ``[B,C,H,W]`` maps.
        b: maps of the same shape.
        win_size: odd side of the window, at most the smaller image side.
        gaussian_weights: Gaussian instead of uniform window weights.
        sigma: Gaussian standard deviation (only with ``gaussian_weights``).
        data_range: dynamic range ``L`` in ``C1 = (k1 L)^2``, ``C2 = (k2 L)^2``: a float, a ``[B]``
            tensor, or None for the per-pair joint range.
        k1: stabiliser of the luminance term.
        k2: stabiliser of the contrast-structure term.
        use_sample_covariance: normalise (co)variances by ``N-1`` (skimage default) instead of ``N``.

    Returns:
        float64 ``[B]`` in [-1, 1].
    """
    x, y = _image_pairs(a, b)
    if win_size is None:
        win_size = 2 * int(_GAUSSIAN_TRUNCATE * sigma + 0.5) + 1 if gaussian_weights else 7
    if win_size % 2 == 0 or win_size > min(x.shape[-2:]):
        raise ValueError(f"win_size must be odd and at most the smaller image side {min(x.shape[-2:])}, "
                         f"got {win_size}")
    kernel = _gaussian_kernel(sigma, _GAUSSIAN_TRUNCATE) if gaussian_weights else torch.full((win_size,), 1 / win_size)
    n, c = x.shape[:2]
    stats = separable_filter(torch.stack([x, y, x * x, y * y, x * y], dim=2), kernel.to(x))  # [B,C,5,H,W]
    ux, uy, uxx, uyy, uxy = stats.unbind(2)
    cov_norm = win_size**2 / (win_size**2 - 1) if use_sample_covariance else 1.0
    vx, vy, vxy = cov_norm * (uxx - ux * ux), cov_norm * (uyy - uy * uy), cov_norm * (uxy - ux * uy)
    r = _data_range(x, y, data_range)[:, None, None, None]
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    cropped = s[..., pad : s.shape[-2] - pad, pad : s.shape[-1] - pad]
    return cropped.reshape(n, c, -1).mean(2).mean(1)


@register_metric("hog_similarity", category="similarity", higher_is_better=None)
def hog_similarity(a: torch.Tensor, b: torch.Tensor, *, orientations: int = 9,
                   pixels_per_cell: tuple[int, int] = (8, 8), cells_per_block: tuple[int, int] = (3, 3),
                   block_norm: BlockNorm = "L2-Hys") -> torch.Tensor:
    """Pearson correlation of the two maps' HOG feature vectors, per image.

    The third similarity of Adebayo et al. (NeurIPS 2018): histograms of oriented gradients
    (Dalal and Triggs, CVPR 2005) compare the edge structure of two maps regardless of their
    intensity scale. Features as :func:`hog_features`.

    Edge cases: a constant map has no gradient, so its features are all zero and the correlation
    is NaN; a map with a NaN gives NaN.

    Args:
        a: ``[B,H,W]`` or ``[B,C,H,W]`` maps, at least ``pixels_per_cell * cells_per_block`` pixels
            on each side.
        b: maps of the same shape.
        orientations: number of orientation bins over [0, 180) degrees.
        pixels_per_cell: cell size ``(rows, cols)``.
        cells_per_block: block size in cells ``(rows, cols)``.
        block_norm: block normalisation, as skimage.

    Returns:
        float64 ``[B]`` in [-1, 1].
    """
    x, y = _image_pairs(a, b)
    options = dict(orientations=orientations, pixels_per_cell=pixels_per_cell,
                   cells_per_block=cells_per_block, block_norm=block_norm)
    return pearson(hog_features(x, **options), hog_features(y, **options))


def hog_features(maps: torch.Tensor, *, orientations: int = 9, pixels_per_cell: tuple[int, int] = (8, 8),
                 cells_per_block: tuple[int, int] = (3, 3), block_norm: BlockNorm = "L2-Hys") -> torch.Tensor:
    """Histogram-of-oriented-gradients feature vector per image, as ``skimage.feature.hog``.

    Dalal and Triggs (CVPR 2005), in scikit-image's variant (0.26): central-difference gradients
    (zero on the border rows/columns); for ``C > 1`` each pixel keeps the channel of largest
    gradient magnitude (first on ties); unsigned orientation ``atan2(g_row, g_col)`` in degrees
    modulo 180, hard-assigned to ``orientations`` bins whose edges are skimage's float32 values of
    ``180/orientations * (i+1)`` (an orientation that rounds to exactly 180 falls in no bin, as
    there); per-cell sums of gradient magnitude divided by the cell area over the
    ``H // rows`` x ``W // cols`` whole cells; overlapping blocks of ``cells_per_block`` cells
    normalised (``L2-Hys``: L2, clip at 0.2, L2 again, eps 1e-5); flattened in skimage's order
    (block row, block column, cell row, cell column, orientation).

    Divergence: skimage accumulates each cell sum in C float32; this sums in float64, so features
    differ from skimage's by about 1e-7 relative (tests hold them to 1e-6).

    Args:
        maps: ``[B,H,W]`` or ``[B,C,H,W]``.
        orientations: number of orientation bins.
        pixels_per_cell: cell size ``(rows, cols)``.
        cells_per_block: block size in cells ``(rows, cols)``.
        block_norm: ``"L1"``, ``"L1-sqrt"``, ``"L2"`` or ``"L2-Hys"``.

    Returns:
        float64 ``[B, n_blocks_row * n_blocks_col * block_rows * block_cols * orientations]``.

    Raises:
        ValueError: an image too small for one block, or an unknown ``block_norm``.
    """
    x = _as_bchw(maps)
    (cr, cc), (br, bc) = pixels_per_cell, cells_per_block
    nr, nc = x.shape[-2] // cr, x.shape[-1] // cc
    if nr < br or nc < bc:
        raise ValueError(f"maps of {tuple(x.shape[-2:])} pixels are too small for HOG blocks of "
                         f"{br * cr}x{bc * cc} pixels")
    if block_norm not in ("L1", "L1-sqrt", "L2", "L2-Hys"):
        raise ValueError(f"unknown block_norm {block_norm!r}")
    g_row, g_col = _hog_gradients(x)
    cells = _cell_histograms(g_row, g_col, orientations, (cr, cc), (nr, nc))  # [B, nr, nc, O]
    blocks = cells.unfold(1, br, 1).unfold(2, bc, 1).permute(0, 1, 2, 4, 5, 3)  # [B, nbr, nbc, br, bc, O]
    return _normalise_blocks(blocks, block_norm).flatten(1)


def _hog_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences with zero borders; per pixel the channel of largest magnitude."""
    g_row, g_col = torch.zeros_like(x), torch.zeros_like(x)
    g_row[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
    g_col[..., 1:-1] = x[..., 2:] - x[..., :-2]
    best = torch.hypot(g_row, g_col).argmax(1, keepdim=True)
    return g_row.gather(1, best)[:, 0], g_col.gather(1, best)[:, 0]


def _cell_histograms(g_row: torch.Tensor, g_col: torch.Tensor, orientations: int, cell: tuple[int, int],
                     n_cells: tuple[int, int]) -> torch.Tensor:
    (cr, cc), (nr, nc) = cell, n_cells
    g_row, g_col = g_row[:, : nr * cr, : nc * cc], g_col[:, : nr * cr, : nc * cc]
    magnitude = torch.hypot(g_col, g_row)
    angle = torch.atan2(g_row, g_col) * (180 / math.pi) % 180
    edges = (180.0 / orientations * torch.arange(1, orientations + 1, dtype=torch.float64))
    edges = edges.to(torch.float32).to(angle)  # skimage compares against C floats
    bins = torch.bucketize(angle, edges, right=True)  # == orientations: exactly 180, in no bin
    per_bin = [(magnitude * (bins == o)).view(-1, nr, cr, nc, cc).sum((2, 4)) for o in range(orientations)]
    return torch.stack(per_bin, dim=-1) / (cr * cc)


def _normalise_blocks(blocks: torch.Tensor, method: BlockNorm) -> torch.Tensor:
    dims, eps = (-3, -2, -1), _HOG_EPS
    if method == "L1":
        return blocks / (blocks.abs().sum(dims, keepdim=True) + eps)
    if method == "L1-sqrt":
        return (blocks / (blocks.abs().sum(dims, keepdim=True) + eps)).sqrt()
    out = blocks / (blocks.square().sum(dims, keepdim=True) + eps**2).sqrt()
    if method == "L2":
        return out
    out = out.clamp_max(0.2)
    return out / (out.square().sum(dims, keepdim=True) + eps**2).sqrt()


def _image_pairs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    return _as_bchw(a), _as_bchw(b)


def _as_bchw(maps: torch.Tensor) -> torch.Tensor:
    x = maps.detach().to(torch.float64)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise ValueError(f"maps must be [B,H,W] or [B,C,H,W], got shape {tuple(maps.shape)}")
    return x


def _gaussian_kernel(sigma: float, truncate: float) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian weights: radius ``int(truncate*sigma+0.5)``, summing to 1."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def symmetric_pad(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Pad the last two dims by ``radius``, mirroring with the edge repeated (scipy's ``reflect``).

    ``d c b a | a b c d | d c b a``; torch's own ``reflect`` mode omits the edge. Any radius works
    (the pattern repeats with period ``2n``).
    """
    for dim in (-2, -1):
        x = x.index_select(dim, _symmetric_indices(x.shape[dim], radius, x.device))
    return x


def _symmetric_indices(n: int, radius: int, device: torch.device) -> torch.Tensor:
    """Source index of each of the ``n + 2 radius`` positions of a symmetrically padded axis."""
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def separable_filter(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate the last two dims of ``x`` ``[..., H, W]`` with ``kernel`` (odd length) along each.

    Borders as scipy.ndimage's default ``mode="reflect"`` (see :func:`symmetric_pad`); the output has
    the input's shape. Padding and correlation are linear, so each axis is one ``[n, n]`` matrix and
    the filter is ``A_H @ x @ A_W^T``: two batched matmuls (faster on the CPU than float64 conv2d).
    """
    rows = _filter_matrix(x.shape[-2], kernel.to(x), x.device)
    cols = _filter_matrix(x.shape[-1], kernel.to(x), x.device)
    return rows @ x @ cols.T


def _filter_matrix(n: int, kernel: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``[n, n]`` matrix of 1-D correlation with ``kernel`` after symmetric padding."""
    k = kernel.numel()
    padded = _symmetric_indices(n, (k - 1) // 2, device)  # [n + k - 1]
    taps = padded[torch.arange(n, device=device)[:, None] + torch.arange(k, device=device)]  # [n, k] source pixels
    matrix = torch.zeros(n, n, dtype=kernel.dtype, device=device)
    return matrix.index_put_((torch.arange(n, device=device)[:, None].expand(n, k), taps),
                             kernel.expand(n, k), accumulate=True)


def _data_range(x: torch.Tensor, y: torch.Tensor, data_range: float | torch.Tensor | None) -> torch.Tensor:
    if data_range is None:
        both = torch.cat([x.flatten(1), y.flatten(1)], dim=1)
        return both.amax(1) - both.amin(1)  # 0 for equal constant maps -> 0/0 -> NaN
    r = torch.as_tensor(data_range, dtype=torch.float64, device=x.device).expand(x.shape[0])
    if not bool((r > 0).all()):
        raise ValueError(f"data_range must be positive, got {data_range}")
    return r
