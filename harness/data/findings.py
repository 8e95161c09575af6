"""Findings of synth-cxr14 besides pneumothorax: effusion, nodule and cardiomegaly, batched.

Each renderer returns what the finding does to a phantom chest (:mod:`harness.data.phantom`):
a bool mask ``[B,1,H,W]``, a factor that multiplies the lung parenchyma (vessels, texture) and an
intensity change added before blur and exposure, all in the X-ray convention (dense = bright).

- Effusion: fluid in the pleural space settles at the lung base and rises along the lateral
  wall (a meniscus), so the costophrenic angle is blunted and the basal lung field turns as dense
  as soft tissue. Mask = the opacified part of the lung field.
- Nodule: a small round dense spot inside the lung field (1-2 per image). Mask = the disk(s).
- Cardiomegaly: the heart silhouette is enlarged (patient heart width times ``scale_w``, height
  times ``scale_h``) before the anatomy is rendered, see :func:`enlarge_heart`. Mask = the heart.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness.data.phantom import canonical_grid, lung_frame

EFFUSION_OPACITY_KEEP = 0.15  # fraction of the lung markings still visible through the fluid
NODULE_MAX_RADIUS = 0.085  # canonical units (the image spans 2); bounds the placement margin


def enlarge_heart(pat: dict[str, torch.Tensor], scale_w: torch.Tensor, scale_h: torch.Tensor) -> dict:
    """Patient factors with the heart of every image scaled (``[B,1,1,1]`` factors, 1 = unchanged)."""
    return {**pat, "heart_w": pat["heart_w"] * scale_w, "heart_h": pat["heart_h"] * scale_h}


def render_effusion(
    pat: dict[str, torch.Tensor],
    img: dict[str, torch.Tensor],
    lung_soft: torch.Tensor,
    sides: torch.Tensor,
    depth: torch.Tensor,
    density: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pleural effusions at the lung bases.

    Args:
        pat, img: patient and image factors of the batch (as given to ``render_anatomy``).
        lung_soft: float ``[B,1,H,W]`` lung coverage.
        sides: float ``[B,2]`` in {0,1}: effusion in the image-left (patient's right) and the
            image-right lung.
        depth: float ``[B,2]`` fluid height at the lateral wall, as a fraction of the lung height.
        density: float ``[B,1,1,1]`` brightness added where the lung field is replaced by fluid.

    Returns:
        ``(mask, keep, delta)``, each ``[B,1,H,W]``.
    """
    size = lung_soft.shape[-1]
    X, Y = canonical_grid(img, size)
    pixel = 2.0 / size / img["scale"]
    fluid = []
    for column, side in enumerate((-1, +1)):
        u, v, height = lung_frame(X, Y, pat, img, side)
        lateral = ((u + 1) / 2).clamp(0, 1)
        top = 1 - depth[:, column, None, None, None] * (0.55 + 0.45 * lateral**1.5)  # meniscus
        layer = torch.sigmoid((v - top) * height / (1.5 * pixel))
        fluid.append(layer * sides[:, column, None, None, None])
    coverage = torch.where(X < 0, fluid[0], fluid[1]) * lung_soft
    keep = 1 - (1 - EFFUSION_OPACITY_KEEP) * coverage
    return coverage > 0.5, keep, density * coverage


def render_nodules(
    allowed: torch.Tensor, where: torch.Tensor, radius: torch.Tensor, contrast: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Round dense nodules centred at pixels of ``allowed``.

    Args:
        allowed: bool ``[B,1,H,W]`` where a centre may lie (lung minus other lesions); where it is
            empty the centre falls back to the middle of the image.
        where: float ``[B,M]`` uniforms in [0,1) choosing each of up to M centres; NaN = no nodule.
        radius: float ``[B,M]`` radius in canonical units (the image spans 2).
        contrast: float ``[B,M]`` brightness added at the nodule.

    Returns:
        ``(mask, delta)``, each ``[B,1,H,W]``.
    """
    mask = torch.zeros(allowed.shape, dtype=torch.bool)
    delta = torch.zeros(allowed.shape)
    rows = torch.nonzero(~where.isnan().all(1)).flatten()
    if rows.numel() == 0:
        return mask, delta
    mask[rows], delta[rows] = _nodules(allowed[rows], where[rows], radius[rows], contrast[rows])
    return mask, delta


def _nodules(allowed, where, radius, contrast) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`render_nodules` for images that have at least one nodule."""
    _, _, height, width = allowed.shape
    inner = _erode(allowed, max(1, math.ceil(NODULE_MAX_RADIUS * width / 2)))
    inner = torch.where(inner.flatten(1).any(1)[:, None, None, None], inner, allowed)
    ys = torch.arange(height, dtype=torch.float32)[None, None, :, None] + 0.5
    xs = torch.arange(width, dtype=torch.float32)[None, None, None, :] + 0.5
    delta = torch.zeros(allowed.shape)
    mask = torch.zeros(allowed.shape, dtype=torch.bool)
    for m in range(where.shape[1]):
        present = ~where[:, m].isnan()
        row, col = _pick_pixels(inner, where[:, m].nan_to_num(0.5))
        dist = torch.hypot(xs - (col.float() + 0.5)[:, None, None, None],
                           ys - (row.float() + 0.5)[:, None, None, None])
        r_px = (radius[:, m] * width / 2)[:, None, None, None]
        disk = (r_px - dist + 0.5).clamp(0, 1) * present[:, None, None, None]
        delta = torch.maximum(delta, contrast[:, m, None, None, None] * disk)
        mask |= disk > 0.5
    return mask, delta


def _erode(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """bool ``[B,1,H,W]`` eroded by a ``(2r+1)`` square, as two 1-D max-pools of the outside."""
    outside = (~mask).float()
    outside = F.max_pool2d(outside, (2 * radius + 1, 1), 1, (radius, 0))
    outside = F.max_pool2d(outside, (1, 2 * radius + 1), 1, (0, radius))
    return mask & ~outside.bool()


def _pick_pixels(mask: torch.Tensor, uniform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, col) of the ``floor(u * count)``-th True pixel of each mask (centre when none)."""
    flat = mask.flatten(1)
    count = flat.sum(1)
    target = (uniform * count).floor().long().clamp(max=(count - 1).clamp_min(0))
    index = (flat.cumsum(1) <= target[:, None]).sum(1)
    width = mask.shape[-1]
    index = torch.where(count > 0, index, (mask.shape[-2] // 2) * width + width // 2)
    return index // width, index % width
