"""Hypothesis strategies matching the perturbation values, for property-based explanation checks.

    @given(p=strategies.gaussian_noise(max_sigma=0.02))
    def test_stable(xai_model, p): ...

Each strategy draws a perturbation value (``gaussian_noise(sigma=...)``) within the stated bound;
``any_perturbation`` draws from all intensity perturbations, ``any_geometric`` from the geometric ones.
"""

from __future__ import annotations

from hypothesis import strategies as st

from harness.data import perturbations as p


def _floats(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(min_value=lo, max_value=hi, allow_nan=False, allow_infinity=False)


def gaussian_noise(max_sigma: float = 0.02) -> st.SearchStrategy[p.gaussian_noise]:
    return st.builds(p.gaussian_noise, sigma=_floats(0.0, max_sigma))


def brightness(max_delta: float = 0.05) -> st.SearchStrategy[p.brightness]:
    return st.builds(p.brightness, delta=_floats(-max_delta, max_delta))


def contrast(max_change: float = 0.1) -> st.SearchStrategy[p.contrast]:
    return st.builds(p.contrast, factor=_floats(1 - max_change, 1 + max_change))


def gaussian_blur(max_sigma: float = 1.0) -> st.SearchStrategy[p.gaussian_blur]:
    return st.builds(p.gaussian_blur, sigma=_floats(0.0, max_sigma))


def jpeg(min_quality: int = 70) -> st.SearchStrategy[p.jpeg]:
    return st.builds(p.jpeg, quality=st.integers(min_quality, 100))


def rotate(max_degrees: float = 10.0) -> st.SearchStrategy[p.rotate]:
    return st.builds(p.rotate, degrees=_floats(-max_degrees, max_degrees))


def shift(max_fraction: float = 0.05) -> st.SearchStrategy[p.shift]:
    return st.builds(p.shift, dx=_floats(-max_fraction, max_fraction), dy=_floats(-max_fraction, max_fraction))


def flips() -> st.SearchStrategy[p.Perturbation]:
    return st.sampled_from([p.hflip(), p.vflip()])


def any_perturbation() -> st.SearchStrategy[p.Perturbation]:
    """Any small intensity perturbation (the map should not change)."""
    return st.one_of(gaussian_noise(), brightness(), contrast(), gaussian_blur(0.5), jpeg())


def any_geometric() -> st.SearchStrategy[p.Perturbation]:
    """Any small geometric perturbation (the map should move with the image)."""
    return st.one_of(rotate(), shift(), flips())


def composed(first: st.SearchStrategy[p.Perturbation], then: st.SearchStrategy[p.Perturbation]
             ) -> st.SearchStrategy[p.compose]:
    """``a >> b`` for ``a`` drawn from ``first`` and ``b`` from ``then``."""
    return st.builds(lambda a, b: a >> b, first, then)
