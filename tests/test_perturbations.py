"""Perturbation values: seeded, clamped, composable, geometric warps, and their repr reads back."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from PIL import Image

from harness.data import strategies
from harness.data.perturbations import (
    PERTURBATIONS,
    brightness,
    compose,
    contrast,
    gaussian_blur,
    gaussian_noise,
    hflip,
    jpeg,
    parse_perturbation,
    rotate,
    shift,
    vflip,
)

G = torch.Generator


def test_repr_round_trips():
    for p in (gaussian_noise(sigma=0.03), brightness(delta=-0.1), rotate(degrees=3.0), shift(dx=0.1, dy=-0.05),
              jpeg(quality=75), hflip(), gaussian_noise(0.01) >> rotate(2.0) >> jpeg(90)):
        assert parse_perturbation(repr(p)) == p


def test_every_registered_perturbation_keeps_shape_range_and_is_seeded():
    x = torch.rand((2, 1, 12, 12), generator=G().manual_seed(0))
    for name in PERTURBATIONS:
        p = compose(gaussian_noise(0.05), hflip()) if name == "compose" else PERTURBATIONS.get(name)()
        a, b = p.apply(x, G().manual_seed(1)), p.apply(x, G().manual_seed(1))
        assert a.shape == x.shape and torch.equal(a, b) and 0 <= a.min() and a.max() <= 1, name
        assert p.warp(x).shape == x.shape, name


def test_noise_is_seeded_and_clamped():
    x = torch.full((2, 1, 8, 8), 0.99)
    a = gaussian_noise(sigma=0.5).apply(x, G().manual_seed(1))
    assert a.max() <= 1 and a.min() >= 0 and not torch.equal(a, x)


def test_brightness_and_contrast():
    x = torch.full((1, 1, 2, 2), 0.5)
    assert torch.allclose(brightness(0.1).apply(x, G()), torch.full_like(x, 0.6))
    y = torch.tensor([[[[0.4, 0.6]]]])
    assert torch.allclose(contrast(2.0).apply(y, G()), torch.tensor([[[[0.3, 0.7]]]]))


def test_blur_preserves_a_constant_image_and_smooths_an_impulse():
    flat = torch.full((1, 1, 9, 9), 0.3)
    assert torch.allclose(gaussian_blur(1.0).apply(flat, G()), flat, atol=1e-6)
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[..., 4, 4] = 1
    out = gaussian_blur(1.0).apply(impulse, G())
    assert out[..., 4, 4] < 0.2 and torch.isclose(out.sum(), torch.tensor(1.0), atol=1e-5)


def test_jpeg_matches_pillow_roughly_and_degrades_with_quality():
    """Our DCT quantisation vs Pillow's real JPEG codec (which adds rounding and 4:4:4 grey coding)."""
    rng = np.random.default_rng(0)
    smooth = torch.from_numpy(rng.random((1, 1, 8, 8))).float()
    x = torch.nn.functional.interpolate(smooth, size=(32, 32), mode="bilinear", align_corners=False)
    ours = jpeg(50).apply(x, G())
    buf = io.BytesIO()
    Image.fromarray((x[0, 0].numpy() * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=50)
    pillow = torch.from_numpy(np.asarray(Image.open(buf), dtype=np.float32) / 255)
    assert (ours[0, 0] - pillow).abs().mean() < 2 / 255
    errors = [(jpeg(q).apply(x, G()) - x).abs().mean() for q in (95, 50, 10)]
    assert errors[0] < errors[1] < errors[2]


def test_geometric_warps():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 0, 2] = 1  # top middle
    assert rotate(90).warp(x)[0, 0, 2, 0] == pytest.approx(1.0, abs=1e-5)  # counter-clockwise: top -> left
    assert shift(dx=0.2).warp(x)[0, 0, 0, 3] == pytest.approx(1.0, abs=1e-5)  # one pixel to the right
    assert torch.equal(hflip().warp(x), x.flip(-1)) and torch.equal(vflip().apply(x, G()), x.flip(-2))
    assert rotate(3).geometric and (gaussian_noise(0.01) >> hflip()).geometric
    assert not (gaussian_noise(0.01) >> jpeg(90)).geometric
    assert torch.equal(gaussian_noise(0.1).warp(x), x)


def test_rotation_there_and_back_is_close_to_identity_inside():
    x = torch.rand((1, 1, 32, 32), generator=G().manual_seed(0))
    x = gaussian_blur(2.0).apply(x, G())
    back = rotate(-5).warp(rotate(5).warp(x))
    assert (back - x)[..., 8:-8, 8:-8].abs().max() < 0.02


@pytest.mark.parametrize("text", ["rotate(5, 6, 7)", "gaussian_noise(sigma=os.system('x'))", "gaussian_noise(sgima=1)",
                                  "compose(sigma=1)", "spin(3)"])
def test_bad_perturbation_is_a_clear_error(text):
    with pytest.raises((ValueError, KeyError)) as err:
        parse_perturbation(text)
    assert "gaussian_noise" in str(err.value) or "sgima" in str(err.value) or "arguments" in str(err.value)


@settings(max_examples=25, deadline=None)
@given(p=strategies.composed(strategies.any_perturbation(), strategies.any_geometric()))
def test_strategies_draw_round_tripping_values_within_bounds(p):
    assert parse_perturbation(repr(p)) == p and p.geometric
    noise, geo = p.steps
    if isinstance(noise, gaussian_noise):
        assert 0 <= noise.sigma <= 0.02
    if isinstance(geo, rotate):
        assert abs(geo.degrees) <= 10
