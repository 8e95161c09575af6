"""Heatmap overlays: input shapes and types, PNG output, and no pyplot side effects."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.report import Overlay, overlay_figure, render_overlay

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def synthetic_overlay(k: int = 3, size: int = 32, *, artifacts: bool = True) -> Overlay:
    yy, xx = np.mgrid[0:size, 0:size]
    lesion = (yy - 12) ** 2 + (xx - 14) ** 2 < 25
    artifact = np.zeros((size, size), bool)
    artifact[2:6, 24:30] = True
    saliency = np.exp(-((yy - 12) ** 2 + (xx - 14) ** 2) / 40.0)
    return Overlay(
        model="resnet18",
        explainer="gradcam",
        images=torch.rand(k, 1, size, size),
        maps01=torch.tensor(np.stack([saliency] * k), dtype=torch.float16)[:, None],
        lesion_masks=torch.tensor(np.stack([lesion] * k)),
        artifact_masks=np.stack([artifact] * k) if artifacts else None,
        labels=torch.tensor([1.0, 0.0, 1.0][:k]),
        scores=np.array([0.91, 0.12, np.nan][:k]),
    )


def test_overlay_normalises_inputs_to_numpy() -> None:
    overlay = synthetic_overlay()
    assert overlay.images.shape == (3, 32, 32) and overlay.images.dtype == np.float32
    assert overlay.maps01.shape == (3, 32, 32) and overlay.lesion_masks.dtype == bool
    assert overlay.labels == [1, 0, 1] and overlay.scores[0] == pytest.approx(0.91)
    assert overlay.title == "resnet18 / gradcam" and overlay.n_cases == 3


def test_overlay_rejects_mismatched_case_counts() -> None:
    with pytest.raises(ValueError, match="labels has 2 cases"):
        Overlay(model="m", explainer="e", images=np.zeros((3, 8, 8)), maps01=np.zeros((3, 8, 8)),
                lesion_masks=np.zeros((3, 8, 8), bool), labels=[0, 1], scores=[0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="must be"):
        Overlay(model="m", explainer="e", images=np.zeros(8), maps01=np.zeros((1, 8, 8)),
                lesion_masks=np.zeros((1, 8, 8), bool), labels=[0], scores=[0.1])


def test_render_overlay_writes_a_sensible_png(tmp_path: Path) -> None:
    path = render_overlay(synthetic_overlay(), tmp_path / "o.png", dpi=60)
    width, height = png_size(path)
    assert 300 <= width <= 2000 and 120 <= height <= 1000 and width > height


def test_overlay_handles_edge_cases(tmp_path: Path) -> None:
    overlay = Overlay(
        model="m", explainer="e", images=np.random.rand(1, 16, 16), title="one case",
        maps01=np.full((1, 4, 4), np.nan),  # a lower-resolution, all-NaN map
        lesion_masks=np.ones((1, 16, 16), bool),  # a mask covering everything has no contour
        labels=["pneumonia"], scores=[0.5],
    )
    width, height = png_size(render_overlay(overlay, tmp_path / "edge.png", cmap="inferno", dpi=50))
    assert width > 50 and height > 50


def test_rendering_leaves_pyplot_alone() -> None:
    fig = overlay_figure(synthetic_overlay(k=2, artifacts=False))
    assert type(fig.canvas).__name__ == "FigureCanvasAgg"
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []
