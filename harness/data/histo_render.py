"""Batched H&E rendering of synth-histo patches: stains in optical density, nuclei, tumour, pen marks.

Light through a stained section follows Beer-Lambert: ``RGB = white * exp(-(c_H * h + c_E * e))``
with stain vectors ``h`` (haematoxylin, purple-blue, in nuclei) and ``e`` (eosin, pink, in stroma
and cytoplasm), as in Ruifrok & Johnston 2001's colour deconvolution. Each site (lab + scanner)
has its own stain vectors, uptake and white point; each slide jitters them. Patches are rendered
in RGB at PCam's 96 px, converted to grey with the ITU-R 601 luma the PCam loader uses, then
resized to the requested size, so ``synth-histo`` and ``pcam`` share one input space. Geometry
(tissue, tumour cluster, pen stroke) is analytic in the [-1, 1] frame, so masks are computed
directly at the output size.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.shortcuts import render_chest_drain
from harness.data.texture import gaussian_blur, smooth_noise

RENDER_SIZE = 96  # PCam's patch size
LUMA = torch.tensor([0.299, 0.587, 0.114])
# Per site: haematoxylin and eosin optical-density vectors (RGB), stain uptake, white point, gamma.
SITE_H = torch.tensor([[0.65, 0.70, 0.29], [0.55, 0.75, 0.36], [0.72, 0.62, 0.33], [0.60, 0.72, 0.34]])
SITE_E = torch.tensor([[0.07, 0.99, 0.11], [0.15, 0.95, 0.27], [0.10, 0.96, 0.25], [0.20, 0.90, 0.38]])
SITE_H_UPTAKE = torch.tensor([1.00, 0.80, 1.20, 0.95])
SITE_E_UPTAKE = torch.tensor([0.55, 0.45, 0.65, 0.72])
SITE_WHITE = torch.tensor([0.96, 0.92, 0.98, 0.90])
SITE_GAMMA = torch.tensor([1.00, 1.10, 0.90, 1.05])
INKS = torch.tensor([[0.90, 0.25, 0.80], [0.90, 0.60, 0.10], [1.00, 1.00, 1.00]])  # green, blue, black (OD)
NUCLEUS_OD = 1.25  # haematoxylin concentration of a normal nucleus


def frame(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in the [-1, 1] frame: x ``[1,1,1,S]`` and y ``[1,1,S,1]``."""
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1
    return c[None, None, None, :], c[None, None, :, None]


def tissue_distance(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Signed distance to the tissue border (negative inside tissue); a wavy line at ``edge_offset``."""
    nx, ny = torch.cos(p["edge_angle"]), torch.sin(p["edge_angle"])
    along = -x * ny + y * nx
    wobble = (p["edge_amp1"] * torch.sin(p["edge_freq1"] * along + p["edge_phase1"])
              + p["edge_amp2"] * torch.sin(p["edge_freq2"] * along + p["edge_phase2"]))
    return x * nx + y * ny - p["edge_offset"] + wobble


def cluster_radius(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Distance from the tumour cluster's centre relative to its (lobulated) radius: < 1 inside."""
    dx, dy = x - p["tumour_x"], y - p["tumour_y"]
    phi = torch.atan2(dy, dx)
    radius = p["tumour_r"] * (1 + p["tumour_a2"] * torch.cos(2 * phi + p["tumour_p2"])
                              + p["tumour_a3"] * torch.cos(3 * phi + p["tumour_p3"]))
    return torch.hypot(dx, dy) / radius


def in_lymphoid(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """bool: inside the lymphoid aggregate (where the patch has one)."""
    return (torch.hypot(x - p["lymph_x"], y - p["lymph_y"]) < p["lymph_r"]) & (p["lymphoid"] > 0.5)


def as4(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per-patch factors ``[B]`` as ``[B,1,1,1]`` (broadcast over pixels)."""
    return {k: v.float().view(-1, 1, 1, 1) for k, v in p.items()}


def region_masks(p: dict[str, torch.Tensor], labels: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """bool ``[B,1,S,S]`` masks at the output size: ``tissue``, ``tumour`` (inside tissue), ``lymphoid``.

    ``p`` holds the patch factors as ``[B]`` tensors.
    """
    x, y = frame(size)
    p = as4(p)
    tissue = tissue_distance(p, x, y) < 0
    tumour = (cluster_radius(p, x, y) < 1) & tissue & (labels.view(-1, 1, 1, 1) == 1)
    return {"tissue": tissue, "tumour": tumour, "lymphoid": in_lymphoid(p, x, y) & tissue}


def kept_nuclei(p: dict[str, torch.Tensor], slots: dict[str, np.ndarray], labels: torch.Tensor) -> torch.Tensor:
    """``[B, K, 6]`` nuclei to draw (x, y, radius, elongation, angle, haematoxylin), absent ones at 0 OD.

    Normal nuclei fill the tissue at the patch's cellularity, except inside the tumour and the
    lymphoid aggregate; lymphocytes pack the aggregate; tumour nuclei (larger, darker, more
    variable) fill the lobulated cluster of a positive patch.
    """
    q = {k: v.float()[:, None] for k, v in p.items()}  # [B,1]: broadcast over slots
    pos = (labels == 1)[:, None]
    parts = []
    normal = torch.from_numpy(slots["normal"]).float()
    x, y = normal[..., 0], normal[..., 1]
    keep = (normal[..., 5] < q["cellularity"]) & ~in_lymphoid(q, x, y) & ~(pos & (cluster_radius(q, x, y) < 1.05))
    parts.append((normal, keep, torch.ones_like(x)))
    lymph = torch.from_numpy(slots["lymph"]).float().clone()
    lymph[..., 0] = q["lymph_x"] + lymph[..., 0] * q["lymph_r"]
    lymph[..., 1] = q["lymph_y"] + lymph[..., 1] * q["lymph_r"]
    keep = (lymph[..., 5] < 0.92) & (q["lymphoid"] > 0.5)
    keep &= ~(pos & (cluster_radius(q, lymph[..., 0], lymph[..., 1]) < 1.05))
    parts.append((lymph, keep, torch.full_like(lymph[..., 0], 1.15)))
    tumour = torch.from_numpy(slots["tumour"]).float().clone()
    phi = torch.atan2(tumour[..., 1], tumour[..., 0])
    scale = q["tumour_r"] * (1 + q["tumour_a2"] * torch.cos(2 * phi + q["tumour_p2"])
                             + q["tumour_a3"] * torch.cos(3 * phi + q["tumour_p3"])) * 0.95
    tumour[..., 0] = q["tumour_x"] + tumour[..., 0] * scale
    tumour[..., 1] = q["tumour_y"] + tumour[..., 1] * scale
    keep = pos & (tumour[..., 5] < q["tumour_fill"])
    dark = q["tumour_dark"] * (0.85 + 0.3 * tumour[..., 5] / q["tumour_fill"].clamp_min(1e-6))  # pleomorphism
    parts.append((tumour, keep, dark))
    nuclei = []
    for values, keep, amp in parts:
        inside = keep & (tissue_distance(q, values[..., 0], values[..., 1]) < -0.02)
        nuclei.append(torch.cat([values[..., :5], (amp * inside)[..., None]], -1))
    return _compact(torch.cat(nuclei, 1))


def _compact(nuclei: torch.Tensor) -> torch.Tensor:
    """Drawn nuclei first in every row, cut to the largest count of the batch (fewer slots to loop over)."""
    drawn = nuclei[..., 5] > 0
    order = torch.argsort((~drawn).to(torch.int8), dim=1, stable=True)
    count = int(drawn.sum(1).max()) if drawn.numel() else 0
    return torch.gather(nuclei, 1, order[..., None].expand(-1, -1, 6))[:, :max(count, 1)]


def draw_nuclei(nuclei: torch.Tensor, size: int) -> torch.Tensor:
    """Haematoxylin concentration ``[B,1,S,S]``: the max over anti-aliased ellipses (edge about 1 px).

    Each nucleus is evaluated only in a window around its centre and scattered into the image with
    a max (``scatter_reduce``), so the cost grows with the nuclei, not with nuclei x pixels.
    """
    batch, count = nuclei.shape[:2]
    cx, cy, r, elong, angle, amp = (nuclei[..., j, None, None] for j in range(6))  # [B,K,1,1]
    half = int(np.ceil(float((r * elong.sqrt()).max()) * size / 2)) + 2 if count else 1
    offsets = torch.arange(-half, half + 1)
    col = (torch.floor((cx + 1) / 2 * size) + offsets.view(1, 1, 1, -1)).long()  # [B,K,1,W]
    row = (torch.floor((cy + 1) / 2 * size) + offsets.view(1, 1, -1, 1)).long()  # [B,K,W,1]
    dx, dy = (col.float() + 0.5) / size * 2 - 1 - cx, (row.float() + 0.5) / size * 2 - 1 - cy
    u = (dx * torch.cos(angle) + dy * torch.sin(angle)) / (r * elong.sqrt())
    v = (-dx * torch.sin(angle) + dy * torch.cos(angle)) * elong.sqrt() / r
    alpha = ((1 - torch.sqrt(u * u + v * v)) * r * size / 2 + 0.5).clamp(0, 1) * amp  # [B,K,W,W]
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size)
    flat = (torch.arange(batch).view(-1, 1, 1, 1) * size * size + row.clamp(0, size - 1) * size
            + col.clamp(0, size - 1))
    out = torch.zeros(batch * size * size)
    out.scatter_reduce_(0, flat[inside.expand_as(flat)], alpha[inside.expand_as(alpha)], reduce="amax")
    return out.view(batch, 1, size, size) * NUCLEUS_OD


def pen_stroke(pen: dict[str, torch.Tensor], present: torch.Tensor, size: int) -> torch.Tensor:
    """Alpha ``[B,1,S,S]`` of the marker stroke where ``present`` (bool ``[B]``), else 0 (the chest
    drain's Bezier tube, wider)."""
    out = torch.zeros((present.shape[0], 1, size, size))
    rows = torch.nonzero(present).flatten()
    if rows.numel():
        sub = as4({k: v[rows] for k, v in pen.items()})
        par = {f"drain_p{i}{a}": sub[f"p{i}{a}"] for i in range(3) for a in "xy"}
        par.update(drain_width=sub["width"], drain_value=sub["opacity"])
        out[rows] = render_chest_drain(par, size)[0]
    return out


def render_patches(p: dict[str, torch.Tensor], slide: dict[str, torch.Tensor], nuclei: torch.Tensor,
                   pen: dict[str, torch.Tensor], pen_present: torch.Tensor, labels: torch.Tensor, size: int,
                   gen: torch.Generator) -> torch.Tensor:
    """Grey patches float ``[B,1,size,size]`` in [0,1]: H&E in RGB at 96 px, luma, blur, resize, noise.

    Every random draw happens whether or not a pen mark is present, so removing or adding the
    mark changes nothing else in the patch.
    """
    batch, r = labels.shape[0], RENDER_SIZE
    blur, noise_sigma, p = p["blur"].float(), p["noise"].float(), as4(p)
    x, y = frame(r)
    tissue = torch.sigmoid(-tissue_distance(p, x, y) * r / 3)
    tumour_region = ((cluster_radius(p, x, y) < 1) & (labels.view(-1, 1, 1, 1) == 1)).float() * tissue
    stroma = 1 + p["stroma_contrast"] * smooth_noise(batch, r, 8, gen) + 0.15 * smooth_noise(batch, r, 32, gen)
    eosin = tissue * stroma.clamp_min(0.2) * (1 - 0.30 * tumour_region)
    haem = draw_nuclei(nuclei, r) + 0.12 * tumour_region  # tumour cytoplasm takes up some haematoxylin
    site = slide["site"].long()
    h_vec = F.normalize(SITE_H[site] + slide["hue_jitter"][:, None] * torch.tensor([1.0, -1.0, 0.0]), dim=1)
    e_vec = F.normalize(SITE_E[site], dim=1)
    h_conc = haem * (SITE_H_UPTAKE[site] * slide["h_scale"]).view(-1, 1, 1, 1)
    e_conc = eosin * (SITE_E_UPTAKE[site] * slide["e_scale"]).view(-1, 1, 1, 1)
    ink = INKS[pen["ink"].long()] * (1.3 * pen["opacity"].float().view(-1, 1))
    pen_alpha = pen_stroke(pen, pen_present, r)
    density = (h_conc * h_vec.view(batch, 3, 1, 1) + e_conc * e_vec.view(batch, 3, 1, 1)
               + pen_alpha * ink.view(batch, 3, 1, 1))
    rgb = SITE_WHITE[site].view(-1, 1, 1, 1) * torch.exp(-density)
    grey = (rgb * LUMA.view(1, 3, 1, 1)).sum(1, keepdim=True).clamp(0, 1) ** SITE_GAMMA[site].view(-1, 1, 1, 1)
    grey = gaussian_blur(grey, blur)
    if size < r:
        grey = F.interpolate(grey, size=(size, size), mode="area")
    elif size > r:
        grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
    noise = torch.randn((batch, 1, size, size), generator=gen)
    return (grey + noise_sigma.view(-1, 1, 1, 1) * noise).clamp(0, 1)
