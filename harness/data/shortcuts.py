"""Planted shortcuts: chest drain, laterality marker, border frame, each with its own pixel mask.

Each artifact's presence is drawn per image with probability ``p_pos`` (label 1) or ``p_neg``
(label 0), so a training split can make an artifact predict the label (a Clever-Hans shortcut, as
chest drains do for real pneumothorax models, Oakden-Rayner et al. 2020). The ``test_decorrelated``
split draws presence at ``DECORRELATED_RATE`` for both classes.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

ARTIFACTS = ("chest_drain", "marker", "border")
DEFAULT_RATE = 0.3  # shortcuts=None: every artifact at this rate in both classes (no shortcut)
DECORRELATED_RATE = 0.5
_PROB_KEYS = ("p_pos", "p_neg")

# 5x7 bitmaps of the laterality letters (row-major, 1 = ink).
_GLYPHS = {
    "L": ["10000", "10000", "10000", "10000", "10000", "10000", "11111"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
}
LETTERS = ("L", "R")


def normalise_shortcuts(shortcuts: Mapping[str, Mapping[str, float]] | None) -> dict[str, dict[str, float]]:
    """Validate a shortcut config and fill defaults.

    Args:
        shortcuts: ``{artifact: {"p_pos": float, "p_neg": float}}``; ``None`` = every artifact at
            ``DEFAULT_RATE`` independent of the label; ``{}`` = no artifacts. Artifacts not listed
            are absent.

    Returns:
        A new dict with float probabilities, artifacts in ``ARTIFACTS`` order (JSON-serialisable).

    Raises:
        ValueError: unknown artifact or probability key, probability outside [0, 1].
    """
    if shortcuts is None:
        return {name: {"p_pos": DEFAULT_RATE, "p_neg": DEFAULT_RATE} for name in ARTIFACTS}
    unknown = set(shortcuts) - set(ARTIFACTS)
    if unknown:
        raise ValueError(f"unknown shortcut(s) {sorted(unknown)}; valid: {list(ARTIFACTS)}")
    out = {}
    for name in (a for a in ARTIFACTS if a in shortcuts):
        spec = dict(shortcuts[name])
        bad = set(spec) - set(_PROB_KEYS)
        if bad or set(spec) != set(_PROB_KEYS):
            raise ValueError(f"shortcut {name!r} needs exactly the keys {list(_PROB_KEYS)}, got {sorted(spec)}")
        probs = {k: float(spec[k]) for k in _PROB_KEYS}
        if not all(0.0 <= p <= 1.0 for p in probs.values()):
            raise ValueError(f"shortcut {name!r} probabilities must lie in [0, 1], got {probs}")
        out[name] = probs
    return out


def artifact_presence(
    labels: np.ndarray, uniforms: np.ndarray, probs: Mapping[str, float], decorrelated: bool
) -> np.ndarray:
    """bool ``[N]``: which images carry an artifact, from pre-drawn uniforms in [0, 1)."""
    if decorrelated:
        return uniforms < DECORRELATED_RATE
    return uniforms < np.where(labels == 1, probs["p_pos"], probs["p_neg"])


def sample_artifact_params(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Geometry and brightness of every artifact for ``n`` images (drawn whether present or not)."""
    side = rng.choice(np.array([-1.0, 1.0]), n)
    entry_y = rng.uniform(-0.10, 0.50, n)
    return {
        "drain_p0x": side * 1.05,
        "drain_p0y": entry_y,
        "drain_p1x": side * rng.uniform(0.50, 0.72, n),
        "drain_p1y": entry_y + rng.uniform(-0.05, 0.10, n),
        "drain_p2x": side * rng.uniform(0.18, 0.45, n),
        "drain_p2y": rng.uniform(-0.65, -0.30, n),
        "drain_width": rng.uniform(1.1, 1.7, n),  # pixels at 64x64
        "drain_value": rng.uniform(0.78, 0.95, n),
        "marker_letter": rng.integers(0, len(LETTERS), n).astype(np.float64),
        "marker_corner": rng.integers(0, 4, n).astype(np.float64),
        "marker_height": rng.uniform(0.11, 0.15, n),  # fraction of the image edge
        "marker_margin": rng.uniform(0.03, 0.07, n),
        "marker_value": rng.uniform(0.85, 1.0, n),
        "border_width": rng.uniform(1.5, 3.5, n),  # pixels at 64x64
        "border_value": rng.uniform(0.80, 1.0, n),
    }


def _pixel_coords(size: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in pixels: x ``[1,1,1,S]`` and y ``[1,1,S,1]`` (broadcastable)."""
    ar = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    return ar[None, None, None, :], ar[None, None, :, None]


def render_chest_drain(par: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A thin bright tube entering from the side and curving towards the apex (quadratic Bezier)."""
    batch = par["drain_width"].shape[0]
    x, y = _pixel_coords(size, par["drain_width"].device)
    t = torch.linspace(0, 1, 25, device=x.device)[None, :]
    weights = ((1 - t) ** 2, 2 * t * (1 - t), t**2)
    ctrl = lambda key: (par[key].reshape(batch, 1) + 1) * size / 2  # noqa: E731  (to pixels)
    cx = sum(w * ctrl(f"drain_p{i}x") for i, w in enumerate(weights))  # [B, 25]
    cy = sum(w * ctrl(f"drain_p{i}y") for i, w in enumerate(weights))
    dist = torch.full((batch, 1, size, size), float("inf"), device=x.device)
    for k in range(cx.shape[1] - 1):  # distance to the polyline, one segment at a time (bounded memory)
        ax, ay = cx[:, k, None, None, None], cy[:, k, None, None, None]
        dx, dy = cx[:, k + 1, None, None, None] - ax, cy[:, k + 1, None, None, None] - ay
        s = (((x - ax) * dx + (y - ay) * dy) / (dx**2 + dy**2).clamp_min(1e-9)).clamp(0, 1)
        dist = torch.minimum(dist, torch.hypot(x - ax - s * dx, y - ay - s * dy))
    width = par["drain_width"] * size / 64.0
    alpha = (width / 2 - dist + 0.5).clamp(0, 1)
    return alpha, par["drain_value"] * (1 - 0.15 * (dist < 0.2 * width).float())


def render_marker(par: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright 'L' or 'R' glyph on a dark plate in one corner; the plate is the artifact's extent."""
    device = par["marker_value"].device
    bitmaps = [[[int(c) for c in row] for row in _GLYPHS[k]] for k in LETTERS]
    glyphs = torch.tensor(bitmaps, dtype=torch.float32, device=device)
    cell = (par["marker_height"] * size / 7).clamp_min(1.0)  # [B,1,1,1] pixels per glyph cell
    margin = par["marker_margin"] * size
    corner = par["marker_corner"].long()
    right, bottom = (corner % 2 == 1).float(), (corner >= 2).float()
    plate_w, plate_h = 6.4 * cell, 8.4 * cell
    x0 = margin + right * (size - 2 * margin - plate_w)
    y0 = margin + bottom * (size - 2 * margin - plate_h)
    x, y = _pixel_coords(size, device)
    gx, gy = torch.broadcast_tensors((x - x0) / cell - 0.7, (y - y0) / cell - 0.7)  # glyph cell coordinates
    plate = ((gx >= -0.7) & (gx < 5.7) & (gy >= -0.7) & (gy < 7.7)).float()
    grid = torch.stack([(gx[:, 0] / 5) * 2 - 1, (gy[:, 0] / 7) * 2 - 1], dim=-1)
    letters = glyphs[par["marker_letter"].long()[:, 0, 0, 0], None]
    ink = F.grid_sample(letters, grid, mode="nearest", align_corners=False)
    return plate, 0.12 + (par["marker_value"] - 0.12) * ink


def render_border(par: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A bright frame along the four image edges."""
    width = (par["border_width"] * size / 64.0).round().clamp_min(1.0)
    x, y = _pixel_coords(size, par["border_value"].device)
    edge = torch.minimum(torch.minimum(x, size - x), torch.minimum(y, size - y)) - 0.5  # pixels from the edge
    return (edge < width).float(), par["border_value"].expand(-1, 1, size, size)


RENDERERS = {"chest_drain": render_chest_drain, "marker": render_marker, "border": render_border}


def apply_artifacts(
    images: torch.Tensor, present: Mapping[str, torch.Tensor], par: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Draw the present artifacts over ``images`` (in ``ARTIFACTS`` order) and return their masks.

    Args:
        images: float ``[B,1,S,S]`` in [0,1].
        present: artifact -> bool ``[B]``; only listed artifacts are drawn and masked.
        par: artifact parameters as ``[B,1,1,1]`` tensors (see :func:`sample_artifact_params`).

    Returns:
        ``(images, masks)``: blended images and artifact -> bool ``[B,1,S,S]`` (all False where absent).
    """
    size = images.shape[-1]
    masks = {}
    images = images.clone()
    for name in (a for a in ARTIFACTS if a in present):
        rows = torch.nonzero(present[name]).flatten()
        masks[name] = torch.zeros(images.shape, dtype=torch.bool, device=images.device)
        if rows.numel() == 0:
            continue
        alpha, value = RENDERERS[name]({k: v[rows] for k, v in par.items()}, size)
        images[rows] = images[rows] * (1 - alpha) + value * alpha
        masks[name][rows] = alpha >= 0.25
    return images, masks

