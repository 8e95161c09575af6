"""Region, border and extrathoracic share of positive attribution: hand-computed examples, edge cases, properties."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics import (
    border_fraction,
    border_frame,
    border_share,
    extrathoracic_share,
    region_share,
    region_share_ratio,
    relevance_mass,
)

MAP = torch.tensor([[0.00, 0.00, 0.25, 0.50],
                    [0.00, 0.25, 0.50, 1.00],
                    [0.00, 0.00, 0.75, 0.50],
                    [0.00, 0.00, 0.00, 0.25]]).view(1, 1, 4, 4) - 0.25
REGION = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
REGION[..., :2, 2:] = True


def test_region_share_by_hand():
    # positive part: inside 0 + .25 + .25 + .75 = 1.25; outside .5 (2,2) + .25 (2,3) = .75; total 2.0
    assert region_share(MAP, REGION).item() == pytest.approx(0.625)
    # the region covers 4 of 16 pixels: 0.625 / 0.25
    assert region_share_ratio(MAP, REGION).item() == pytest.approx(2.5)
    assert region_share(MAP, ~REGION).item() == pytest.approx(0.375)


def test_edge_cases():
    assert math.isnan(region_share(MAP, torch.zeros_like(REGION)).item())
    assert math.isnan(region_share_ratio(MAP, torch.zeros_like(REGION)).item())
    assert math.isnan(region_share(-MAP.abs(), REGION).item())  # no positive attribution
    assert region_share(MAP, torch.ones_like(REGION)).item() == 1.0
    uniform = torch.ones(1, 1, 4, 4)
    assert region_share_ratio(uniform, REGION).item() == pytest.approx(1.0)  # no preference


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.01, 100))
def test_range_scale_invariance_and_complement(seed, scale):
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(6, 1, 8, 8, generator=g).double()
    regions = torch.rand(6, 1, 8, 8, generator=g) < 0.3
    regions[:, :, 0, 0], regions[:, :, -1, -1] = True, False
    share = region_share(maps, regions)
    assert ((share >= 0) & (share <= 1)).all()
    assert torch.allclose(region_share(scale * maps, regions), share)
    assert torch.allclose(share + region_share(maps, ~regions), torch.ones(6, dtype=torch.float64))
    assert torch.equal(share, relevance_mass(maps, regions))
    area = regions.double().mean(dim=(1, 2, 3))
    assert torch.allclose(region_share_ratio(maps, regions), share / area)


def test_border_share_by_hand():
    # width 1 on 4x4: the 12 frame pixels; positive part inside the frame .25 (0,3) + .75 (1,3) + .25 (2,3) = 1.25
    # (the central 2x2 holds the other .25 + .5): share 1.25 / 2.0
    assert border_frame((4, 4), width=1).sum().item() == 12
    assert border_share(MAP, width=1).item() == pytest.approx(0.625)
    assert border_fraction((4, 4), width=1) == pytest.approx(0.75)
    assert border_share(MAP, width=2).item() == 1.0  # the frame covers the image
    uniform = border_share(torch.ones(2, 1, 10, 8), width=2)
    assert uniform.tolist() == pytest.approx([border_fraction((10, 8), width=2)] * 2)
    assert math.isnan(border_share(-MAP.abs(), width=1).item())
    with pytest.raises(ValueError, match="width"):
        border_share(MAP, width=0)


def test_extrathoracic_share_is_the_share_outside_the_anatomy():
    lungs = REGION  # pretend the top-right block is the thorax
    assert extrathoracic_share(MAP, lungs).item() == pytest.approx(0.375)
    assert math.isnan(extrathoracic_share(MAP, torch.ones_like(lungs)).item())  # nothing outside
    assert extrathoracic_share(MAP, torch.zeros_like(lungs)).item() == 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4))
def test_border_share_equals_a_loop_reference(seed, width):
    maps = torch.randn(3, 1, 9, 11, generator=torch.Generator().manual_seed(seed)).double()
    got = border_share(maps, width=width)
    for i in range(3):
        m = maps[i, 0].clamp_min(0).numpy()
        inside = sum(m[r, c] for r in range(9) for c in range(11)
                     if min(r, c, 8 - r, 10 - c) < width)
        assert got[i].item() == pytest.approx(inside / m.sum(), abs=1e-12)
    anatomy = ~border_frame((9, 11), width=width).expand(3, 1, 9, 11)
    assert torch.allclose(extrathoracic_share(maps, anatomy), got)
