"""Batched texture primitives of the phantom: vessel trees, smooth noise fields, per-image blur."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

N_TREES = 48
TREE_RESOLUTION = 128
_TREE_SEED = 20240611  # the library is part of the generator version, not of the dataset seed


@functools.lru_cache(maxsize=2)
def vessel_tree_library(n_trees: int = N_TREES, resolution: int = TREE_RESOLUTION) -> torch.Tensor:
    """Pulmonary vessel trees drawn in lung-local texture coordinates.

    Texture x runs from medial (-1) to lateral (+1), texture y from apex (-1) to base (+1). Each tree
    branches from a hilum near the medial middle of the lung: 5-7 trunks, four binary generations,
    thinner and fainter towards the periphery.

    Args:
        n_trees: number of distinct trees.
        resolution: texture edge in pixels.

    Returns:
        float32 ``[n_trees, 1, resolution, resolution]`` in [0, 1].
    """
    rng = np.random.default_rng(_TREE_SEED)
    trees = np.stack([_draw_tree(_tree_segments(rng), resolution) for _ in range(n_trees)])
    return torch.from_numpy(trees[:, None].astype(np.float32))


def _tree_segments(rng: np.random.Generator) -> np.ndarray:
    """Segments ``[n, 6]`` = (x0, y0, x1, y1, width, amplitude) of one branching tree."""
    hilum = np.array([rng.uniform(-0.65, -0.45), rng.uniform(-0.05, 0.15)])
    n_trunks = int(rng.integers(5, 8))
    angles = np.sort(rng.uniform(-2.1, 1.9, n_trunks))  # radians, y down: -pi/2 = towards the apex
    frontier = [(hilum, a, rng.uniform(0.34, 0.48), 0.055, 1.0) for a in angles]
    segments = []
    for _generation in range(5):
        grown = []
        for start, angle, length, width, amp in frontier:
            end = start + length * np.array([math.cos(angle), math.sin(angle)])
            segments.append([*start, *end, width, amp])
            for sign in (-1.0, 1.0):
                child_angle = angle + sign * rng.uniform(0.2, 0.6) + rng.normal(0, 0.1)
                grown.append((end, child_angle, length * rng.uniform(0.6, 0.8), width * 0.72, amp * 0.78))
        frontier = grown
    return np.array(segments)


def _draw_tree(segments: np.ndarray, resolution: int) -> np.ndarray:
    """Max over segments of a Gaussian tube profile; each segment is evaluated in its bounding box."""
    image = np.zeros((resolution, resolution), dtype=np.float32)
    coords = (np.arange(resolution) + 0.5) / resolution * 2 - 1
    to_index = lambda c: int(np.clip((c + 1) / 2 * resolution, 0, resolution))  # noqa: E731
    for x0, y0, x1, y1, width, amp in segments:
        reach = 3 * width
        cols = slice(to_index(min(x0, x1) - reach), to_index(max(x0, x1) + reach) + 1)
        rows = slice(to_index(min(y0, y1) - reach), to_index(max(y0, y1) + reach) + 1)
        px, py = np.meshgrid(coords[cols], coords[rows])
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * dx + (py - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        dist2 = (px - x0 - t * dx) ** 2 + (py - y0 - t * dy) ** 2
        np.maximum(image[rows, cols], amp * np.exp(-dist2 / width**2), out=image[rows, cols])
    return image


def smooth_noise(
    batch: int, size: int, cells: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Band-limited noise: a ``cells x cells`` Gaussian field upsampled bicubically to ``size``.

    Returns:
        float32 ``[batch, 1, size, size]``, roughly zero-mean, unit-variance.
    """
    cells = max(2, min(cells, size))
    coarse = torch.randn(batch, 1, cells, cells, generator=generator).to(device)
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return field / field.flatten(1).std(1).clamp_min(1e-6)[:, None, None, None]


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (in pixels) per image, as one grouped convolution.

    Args:
        images: float ``[B,1,H,W]``.
        sigma: float ``[B]``, > 0.

    Returns:
        Blurred images, same shape (reflect padding).
    """
    batch = images.shape[0]
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].to(images.dtype)) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)  # [B, K]
    x = images.reshape(1, batch, *images.shape[-2:])
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=batch)
    x = F.conv2d(x, kernel[:, None, :, None], groups=batch)
    return x.reshape_as(images)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grey-level dilation of ``[B,1,H,W]`` by a ``(2r+1)`` square (``radius`` 0 = identity)."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * radius + 1, stride=1, padding=radius)
