"""Perturbation values: seeded, clamped, and their repr reads back."""

from __future__ import annotations

import pytest
import torch

from harness.data.perturbations import brightness, gaussian_noise, parse_perturbation


def test_repr_round_trips():
    for p in (gaussian_noise(sigma=0.03), brightness(delta=-0.1)):
        assert parse_perturbation(repr(p)) == p


def test_noise_is_seeded_and_clamped():
    x = torch.full((2, 1, 8, 8), 0.99)
    a = gaussian_noise(sigma=0.5).apply(x, torch.Generator().manual_seed(1))
    b = gaussian_noise(sigma=0.5).apply(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.max() <= 1 and a.min() >= 0 and not torch.equal(a, x)


def test_brightness_adds_delta():
    x = torch.full((1, 1, 2, 2), 0.5)
    assert torch.allclose(brightness(0.1).apply(x, torch.Generator()), torch.full_like(x, 0.6))


@pytest.mark.parametrize("text", ["rotate(5)", "gaussian_noise(sigma=os.system('x'))", "gaussian_noise(sgima=1)"])
def test_bad_perturbation_is_a_clear_error(text):
    with pytest.raises((ValueError, KeyError)) as err:
        parse_perturbation(text)
    assert "gaussian_noise" in str(err.value) or "sgima" in str(err.value)
