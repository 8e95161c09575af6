"""Fixed input preprocessing inside the model: batched CLAHE (as OpenCV computes it) and z-score.

Seed 000 preprocesses chest X-rays with CLAHE and z-score normalisation. Here both run inside
:class:`~harness.models.architectures.ClassifierNet`, so a trained model and every explainer see
the same transform and explanations stay in the raw image's pixel space. CLAHE is a histogram
lookup (zero gradient almost everywhere), so it passes gradients straight through (identity
backward); z-score is an ordinary differentiable function. Both are batched torch, on the batch's
device: no per-image host round trip.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.recipes import PREPROCESSING

#: OpenCV's tile grid default; clip limit 2.0 is the usual choice for radiographs (OpenCV's default
#: of 40 barely limits contrast).
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = 8
_BINS = 256


class Preprocess(nn.Module):
    """The fixed transform named ``kind`` (one of :data:`PREPROCESSING`); no parameters, no buffers.

    ``standardises`` tells :class:`ClassifierNet` that the output is already z-scored, so its fixed
    ``(x - 0.5) / 0.25`` normalisation is skipped.
    """

    def __init__(self, kind: str = "none") -> None:
        super().__init__()
        if kind not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {kind!r}; known: {', '.join(PREPROCESSING)}")
        self.kind = kind
        self.standardises = "zscore" in kind

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if "clahe" in self.kind:
            x = straight_through(x, clahe(x))
        if self.standardises:
            x = zscore(x)
        return x

    def extra_repr(self) -> str:
        return repr(self.kind)


def straight_through(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Forward value exactly ``y``, gradient of the identity with respect to ``x``."""
    return y.detach() + (x - x.detach())


def zscore(images: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-image standardisation ``(x - mean) / (std + eps)`` over C,H,W (population std)."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    std = images.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return (images - mean) / (std + eps)


@torch.no_grad()
def clahe(images: torch.Tensor, *, clip_limit: float = CLAHE_CLIP_LIMIT, tiles: int = CLAHE_TILES) -> torch.Tensor:
    """Contrast-limited adaptive histogram equalisation of float images ``[B,1,H,W]`` in [0,1].

    Follows OpenCV's ``createCLAHE(clipLimit, (tiles, tiles)).apply`` on the 8-bit image: images
    are quantised to 256 levels, padded bottom/right by reflection to a multiple of the tile grid,
    per-tile histograms are clipped at ``max(int(clip_limit * tile_area / 256), 1)`` with the
    excess redistributed uniformly (remainder stepwise), mapped through the scaled cumulative
    histogram and bilinearly interpolated between the four nearest tile centres. Agrees with
    OpenCV to within one grey level (float rounding at exact .5 boundaries). Returns [0,1] floats.
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"clahe expects [B,1,H,W], got {tuple(images.shape)}")
    levels = images.float().mul(255.0).round().clamp(0, 255).long()[:, 0]
    luts, tile_h, tile_w = _tile_luts(levels, clip_limit, tiles)
    return _interpolate(levels, luts, tile_h, tile_w, tiles).div(255.0).to(images.dtype).unsqueeze(1)


def _tile_luts(levels: torch.Tensor, clip_limit: float, tiles: int) -> tuple[torch.Tensor, int, int]:
    """Per-tile lookup tables ``[B, tiles*tiles, 256]`` (float, integral values) and the tile size."""
    b, h, w = levels.shape
    pad_h, pad_w = (-h) % tiles, (-w) % tiles
    if pad_h or pad_w:  # OpenCV pads by tiles - h % tiles only when the size is not divisible
        levels = F.pad(levels[:, None].float(), (0, pad_w, 0, pad_h), mode="reflect")[:, 0].long()
    tile_h, tile_w = levels.shape[1] // tiles, levels.shape[2] // tiles
    area = tile_h * tile_w
    blocks = levels.view(b, tiles, tile_h, tiles, tile_w).permute(0, 1, 3, 2, 4).reshape(b * tiles * tiles, area)
    hist = torch.zeros(blocks.shape[0], _BINS, dtype=torch.long, device=levels.device)
    hist.scatter_add_(1, blocks, torch.ones_like(blocks))
    if clip_limit > 0:
        hist = _clip_histograms(hist, max(int(clip_limit * area / _BINS), 1))
    scale = torch.tensor((_BINS - 1) / area, dtype=torch.float32)
    luts = (hist.cumsum(1).float() * scale.to(levels.device)).round().clamp(0, 255)
    return luts.view(b, tiles * tiles, _BINS), tile_h, tile_w


def _clip_histograms(hist: torch.Tensor, limit: int) -> torch.Tensor:
    """Clip each row at ``limit``; spread the excess uniformly, the remainder one per ``step`` bins."""
    excess = (hist - limit).clamp(min=0).sum(1, keepdim=True)
    hist = hist.clamp(max=limit)
    batch = excess // _BINS
    residual = excess - batch * _BINS
    step = torch.clamp(_BINS // residual.clamp(min=1), min=1)
    bins = torch.arange(_BINS, device=hist.device)[None]
    gets_one = (residual > 0) & (bins % step == 0) & (bins // step < residual)
    return hist + batch + gets_one.long()


def _interpolate(levels: torch.Tensor, luts: torch.Tensor, tile_h: int, tile_w: int, tiles: int) -> torch.Tensor:
    """Bilinear blend of the four neighbouring tiles' mappings, rounded like ``saturate_cast<uchar>``."""
    b, h, w = levels.shape
    y0, y1, wy = _neighbours(h, tile_h, tiles, levels.device)
    x0, x1, wx = _neighbours(w, tile_w, tiles, levels.device)
    flat = luts.reshape(b, -1)

    def lookup(ty: torch.Tensor, tx: torch.Tensor) -> torch.Tensor:
        index = (ty[:, None] * tiles + tx[None, :])[None] * _BINS + levels
        return flat.gather(1, index.reshape(b, -1)).view(b, h, w)

    top = lookup(y0, x0) * (1 - wx) + lookup(y0, x1) * wx
    bottom = lookup(y1, x0) * (1 - wx) + lookup(y1, x1) * wx
    return (top * (1 - wy[:, None]) + bottom * wy[:, None]).round().clamp(0, 255)


def _neighbours(n: int, tile: int, tiles: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """For each pixel coordinate: the lower / upper tile index and the weight of the upper one."""
    pos = torch.arange(n, device=device, dtype=torch.float32) * torch.tensor(1.0 / tile, dtype=torch.float32) - 0.5
    low = torch.floor(pos)
    weight = pos - low
    low = low.long()
    return low.clamp(min=0), (low + 1).clamp(max=tiles - 1), weight


__all__ = ["PREPROCESSING", "Preprocess", "clahe", "zscore", "straight_through", "CLAHE_CLIP_LIMIT", "CLAHE_TILES"]
