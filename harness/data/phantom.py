"""Procedural frontal chest radiograph anatomy, rendered for a whole batch at once.

Geometry is written in a canonical frame: x from -1 (image left = patient's right) to +1, y from
-1 (top) to +1 (bottom). Each image maps its pixels into that frame through its own pose (shift,
scale, rotation), so every structure is a closed-form function of two coordinate tensors
``[B,1,H,W]`` and there is no per-pixel Python loop. Intensities follow the X-ray convention:
air is dark, soft tissue and bone are bright.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.texture import N_TREES, vessel_tree_library

# Patient-level anatomy (uniform ranges, canonical units), shared by all images of a patient.
PATIENT_RANGES: dict[str, tuple[float, float]] = {
    "body_w": (0.80, 0.88),
    "lung_gap": (0.34, 0.40),
    "lung_w": (0.25, 0.30),
    "lung_top": (-0.70, -0.58),
    "lung_h": (1.00, 1.16),
    "dome": (0.10, 0.20),
    "right_raise": (0.02, 0.07),
    "heart_x": (0.08, 0.14),
    "heart_w": (0.31, 0.37),
    "heart_h": (0.24, 0.30),
    "medi_w": (0.08, 0.12),
    "rib_spacing": (0.095, 0.115),
    "rib_phase": (0.0, 1.0),
    "clav_drop": (0.04, 0.10),
    "tissue": (0.90, 1.10),
    "vessel_amp": (0.8, 1.2),
}
# Image-level pose and exposure (uniform ranges): position, scale, rotation, breath, contrast.
IMAGE_RANGES: dict[str, tuple[float, float]] = {
    "shift_x": (-0.06, 0.06),
    "shift_y": (-0.05, 0.05),
    "scale": (0.92, 1.05),
    "rotation": (-0.06, 0.06),  # radians
    "inspiration": (0.95, 1.05),
    "gain": (0.85, 1.15),
    "offset": (-0.05, 0.05),
    "gamma": (0.85, 1.20),
    "blur": (0.45, 0.80),  # Gaussian sigma in pixels of a 64x64 image (scaled with size)
    "noise": (0.008, 0.020),  # quantum noise sigma, in [0,1] intensity
}
BUBBLE_P = 0.5  # gastric air bubble under the left hemidiaphragm


def sample_patient_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Anatomy of ``n`` patients: float arrays per ``PATIENT_RANGES`` key, plus vessel-tree ids."""
    out = {k: rng.uniform(lo, hi, n) for k, (lo, hi) in PATIENT_RANGES.items()}
    out["tree_right"] = rng.integers(0, N_TREES, n)
    out["tree_left"] = rng.integers(0, N_TREES, n)
    out["bubble"] = (rng.random(n) < BUBBLE_P).astype(np.float64)
    return out


def sample_image_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Pose and exposure of ``n`` images: float arrays per ``IMAGE_RANGES`` key."""
    return {k: rng.uniform(lo, hi, n) for k, (lo, hi) in IMAGE_RANGES.items()}


def batch_factors(
    factors: dict[str, np.ndarray], index: np.ndarray, device: torch.device | str
) -> dict[str, torch.Tensor]:
    """Rows ``index`` of every factor as ``[B,1,1,1]`` tensors (int ids stay ``[B]`` int64)."""
    out = {}
    for key, values in factors.items():
        picked = torch.from_numpy(np.asarray(values)[index])
        out[key] = picked.to(device) if picked.dtype == torch.int64 else picked.float().to(device)[:, None, None, None]
    return out


@dataclass
class Anatomy:
    """One rendered batch of healthy anatomy.

    Attributes:
        base: float ``[B,1,H,W]`` attenuation-like brightness without the lung parenchyma.
        parenchyma: float ``[B,1,H,W]`` vessel markings and fine lung texture (a lesion removes it).
        lung_soft: float ``[B,1,H,W]`` anti-aliased lung-field coverage.
        lung_mask: bool ``[B,1,H,W]`` (``lung_soft > 0.5``).
        wall_depth: float ``[B,1,H,W]`` distance in pixels to the chest-wall part of the lung
            outline (lateral wall and apex, not mediastinum or diaphragm), inside the lungs.
        heart: float ``[B,1,H,W]`` anti-aliased heart silhouette above the diaphragm (the
            cardiomegaly mask of ``synth-cxr14``); it adds nothing to ``base``.
    """

    base: torch.Tensor
    parenchyma: torch.Tensor
    lung_soft: torch.Tensor
    lung_mask: torch.Tensor
    wall_depth: torch.Tensor
    heart: torch.Tensor | None = None


def canonical_grid(img: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical coordinates ``(X, Y)``, each ``[B,1,S,S]``, of every pixel centre under each pose."""
    device = img["scale"].device
    coords = (2 * torch.arange(size, device=device, dtype=torch.float32) + 1) / size - 1
    px = coords[None, None, None, :] - img["shift_x"]
    py = coords[None, None, :, None] - img["shift_y"]
    cos, sin = torch.cos(img["rotation"]), torch.sin(img["rotation"])
    return (cos * px + sin * py) / img["scale"], (-sin * px + cos * py) / img["scale"]


def _soft(distance: torch.Tensor, pixel: torch.Tensor) -> torch.Tensor:
    """Anti-aliased inside-indicator of a signed distance (positive inside)."""
    return torch.sigmoid(distance / (0.5 * pixel))


def lung_frame(X, Y, pat, img, side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lung-local coordinates of one side (-1 = image left): ``u`` from -1 (medial) to +1
    (lateral), ``v`` from 0 (apex) to 1 (costophrenic angle), and the lung's height."""
    height = pat["lung_h"] * img["inspiration"] - (pat["right_raise"] if side < 0 else 0.0)
    u = side * (X - side * pat["lung_gap"]) / pat["lung_w"]  # +1 lateral, -1 medial
    v = (Y - pat["lung_top"]) / height  # 0 apex, 1 costophrenic angle
    return u, v, height


def _lung_side(X, Y, pat, img, side: int) -> tuple[torch.Tensor, ...]:
    """One lung (side -1 = image left): signed distance to its outline, distance to its chest-wall
    part (lateral wall and apex), lung-local ``(u, v)`` and the diaphragm's height."""
    width = pat["lung_w"]
    u, v, height = lung_frame(X, Y, pat, img, side)
    lateral = 1 - 0.85 * (1 - (v / 0.75).clamp(0, 1)) ** 2.5 - u  # convex lateral wall
    medial = u + 1 - 0.45 * (1 - (v / 0.35).clamp(0, 1)) ** 2
    apex = v - 0.10 * ((u + 0.2) / 0.7) ** 2  # rounded dome of the apex
    q = ((u + 0.1) / 1.1).clamp(-1, 1)
    floor = 1 - pat["dome"] / height * (1 - q**2)  # diaphragm dome, in v units
    wall = torch.minimum(lateral * width, apex * height)
    dist = torch.minimum(torch.minimum(wall, medial * width), (floor - v) * height)
    return dist, wall, u, v, pat["lung_top"] + floor * height


def _ribs(X, Y, pat, pixel, side: int, base_y: torch.Tensor) -> torch.Tensor:
    """Posterior ribs of one side as one periodic band pattern along curved rib coordinates."""
    t = (side * X - 0.04) / (pat["lung_gap"] + pat["lung_w"])
    depth = ((Y - pat["lung_top"]) / (base_y - pat["lung_top"])).clamp(0, 1.2)
    curve = (-0.08 * t + 0.34 * t**2) * (1 + 0.6 * depth)
    r = (Y - pat["lung_top"] + 0.06 - curve) / pat["rib_spacing"] + pat["rib_phase"]
    p = (r - torch.floor(r) - 0.5).abs()  # 0 at a rib's centre line, 0.5 between ribs
    soft_p = pixel / pat["rib_spacing"]
    bone = ((0.22 - p) / soft_p).clamp(0, 1)
    cortex = torch.exp(-(((p - 0.19) / 0.05) ** 2))
    region = torch.sigmoid((t - 0.03) / 0.04) * torch.sigmoid((1.12 - t) / 0.05)
    region = region * torch.sigmoid((base_y + 0.12 - Y) / 0.04) * torch.sigmoid((Y - pat["lung_top"] + 0.08) / 0.03)
    return (0.7 * bone + 0.3 * cortex) * region


def _clavicle(X, Y, pat, pixel, side: int) -> torch.Tensor:
    """One clavicle: an S-curved bright band rising from the sternum towards the shoulder."""
    t = (side * X - 0.06) / 0.62
    centre = pat["lung_top"] + pat["clav_drop"] - 0.14 * t + 0.04 * torch.sin(torch.pi * t.clamp(0, 1))
    band = _soft(0.032 - (Y - centre).abs(), pixel)
    return band * torch.sigmoid(t / 0.03) * torch.sigmoid((1 - t) / 0.03)


def _vessels(u, v, tree_ids: torch.Tensor) -> torch.Tensor:
    """Sample each image's vessel tree at its lung-local coordinates."""
    trees = vessel_tree_library().to(u.device)[tree_ids]  # [B,1,R,R]
    grid = torch.stack([u[:, 0], 2 * v[:, 0] - 1], dim=-1)
    return F.grid_sample(trees, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def render_anatomy(
    pat: dict[str, torch.Tensor], img: dict[str, torch.Tensor], size: int, texture: torch.Tensor
) -> Anatomy:
    """Render healthy chests for a batch.

    Args:
        pat: patient factors (see :func:`batch_factors`) of each image's patient.
        img: image factors of each image.
        size: output edge in pixels.
        texture: float ``[B,2,S,S]`` unit-variance noise: channel 0 soft-tissue mottling, channel 1
            fine lung texture (drawn by the caller from its seeded generator).

    Returns:
        The anatomy layers; lungs are left un-darkened by lesions.
    """
    X, Y = canonical_grid(img, size)
    pixel = 2.0 / size / img["scale"]
    d_right, wall_r, u_r, v_r, base_r = _lung_side(X, Y, pat, img, -1)
    d_left, wall_l, u_l, v_l, base_l = _lung_side(X, Y, pat, img, +1)
    diaphragm = torch.where(X < 0, base_r, base_l)

    heart_y = base_l - 0.30 * pat["heart_h"]
    heart_r = torch.sqrt(((X - pat["heart_x"]) / pat["heart_w"]) ** 2 + ((Y - heart_y) / pat["heart_h"]) ** 2)
    heart = _soft((1 - heart_r) * pat["heart_h"], pixel)
    knob_r = torch.sqrt(((X - pat["medi_w"]) / 0.07) ** 2 + ((Y - pat["lung_top"] - 0.30) / 0.09) ** 2)
    medi = torch.maximum(_soft(pat["medi_w"] - (X - 0.01).abs(), pixel), _soft((1 - knob_r) * 0.07, pixel))
    above_diaphragm = torch.sigmoid((diaphragm - Y) / (2 * pixel))
    central = torch.maximum(heart, medi) * above_diaphragm
    trachea = _soft(0.035 - X.abs(), pixel) * torch.sigmoid((pat["lung_top"] + 0.30 - Y) / 0.03)

    lung_soft = (_soft(d_right, pixel) + _soft(d_left, pixel)).clamp(max=1) * (1 - central)
    shoulder = -0.88 + 0.22 * (X / pat["body_w"]) ** 2
    half_width = pat["body_w"] * (1 - 0.07 * ((Y - 0.2) / 0.9) ** 2)
    torso = _soft(torch.minimum(half_width - X.abs(), Y - shoulder), pixel)
    neck = _soft(torch.minimum(0.21 - X.abs(), -Y), pixel)
    arms = _soft(torch.minimum(X.abs() - pat["body_w"] - 0.06, 0.35 - Y), pixel)
    body = torch.maximum(torch.maximum(torso, neck), arms)
    thickness = torch.sqrt((1 - (X / (pat["body_w"] + 0.1)) ** 2).clamp(0.05, 1))
    flank = torch.sigmoid((pat["lung_gap"] + pat["lung_w"] - X.abs()) / 0.06)
    abdomen = torso * flank * torch.sigmoid((Y - diaphragm) / pixel)
    bubble_r = torch.sqrt(((X - pat["lung_gap"] - 0.02) / 0.09) ** 2 + ((Y - base_l - 0.07) / 0.05) ** 2)
    bubble = pat["bubble"] * _soft((1 - bubble_r) * 0.05, pixel)
    vertebrae = torch.cos(2 * torch.pi * (Y / pat["rib_spacing"] + pat["rib_phase"]))
    spine = _soft(0.055 - X.abs(), pixel) * (0.8 + 0.2 * vertebrae)
    ribs = _ribs(X, Y, pat, pixel, -1, base_r) + _ribs(X, Y, pat, pixel, +1, base_l)
    clavicles = _clavicle(X, Y, pat, pixel, -1) + _clavicle(X, Y, pat, pixel, +1)

    v_lung = torch.where(X < 0, v_r, v_l)
    lung_shade = 0.28 - 0.05 * v_lung.clamp(0, 1) ** 2 - 0.05 * (1 - v_lung / 0.2).clamp(0, 1)
    base = (
        0.03
        + body * (0.46 * thickness * pat["tissue"] + 0.03 * texture[:, :1])
        + 0.15 * abdomen
        + 0.16 * central
        - 0.08 * trachea
        + 0.04 * spine
        - lung_soft * lung_shade
        + 0.10 * ribs * torso * (1 - 0.7 * central)
        + 0.16 * clavicles * body
        - 0.15 * bubble * abdomen
    )
    vessels = torch.where(X < 0, _vessels(u_r, v_r, pat["tree_right"]), _vessels(u_l, v_l, pat["tree_left"]))
    parenchyma = lung_soft * (0.16 * pat["vessel_amp"] * vessels + 0.025 * texture[:, 1:2])
    wall_depth = torch.where(X < 0, wall_r, wall_l) / pixel
    return Anatomy(base, parenchyma, lung_soft, lung_soft > 0.5, wall_depth, heart * above_diaphragm)


def expose(intensity: torch.Tensor, img: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-image exposure: gain and offset around mid-grey, a soft toe (like film's H&D curve, so
    very lucent regions keep their texture instead of clipping to black), then gamma."""
    windowed = 0.3 + img["offset"] + img["gain"] * (intensity - 0.3)
    return F.softplus(windowed, beta=25.0).clamp(max=1) ** img["gamma"]
