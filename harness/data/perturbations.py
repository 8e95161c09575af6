"""Input perturbations as small immutable, composable values: ``gaussian_noise(sigma=0.02)``, ``rotate(degrees=5)``.

Each value applies to float images ``[B,C,H,W]`` in [0,1] with an explicit seeded generator, and its
``repr`` reads back with ``parse_perturbation`` (the form written in YAML suites). Values compose with
``>>`` (``gaussian_noise(0.01) >> rotate(5)``; repr ``compose(...)``).

Intensity perturbations (noise, blur, brightness, contrast, JPEG-like quantisation) change pixel values
only: a faithful map should stay the same. Geometric ones (flips, rotations, shifts) move the content:
a faithful map should move with it (equivariance), so they also ``warp`` maps the same way.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, fields
from functools import lru_cache

import torch
import torch.nn.functional as F

from harness.registry import Registry

PERTURBATIONS: Registry = Registry("perturbation")


class Perturbation:
    """Base class: ``apply(images, generator) -> images`` (clamped to [0,1]).

    ``geometric`` perturbations also ``warp`` any ``[B,C,H,W]`` tensor (a map) the same way, unclamped.
    """

    geometric = False

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def warp(self, maps: torch.Tensor) -> torch.Tensor:
        """The same geometric change applied to maps (identity for intensity perturbations)."""
        return maps

    def __rshift__(self, other: "Perturbation") -> "compose":
        return compose(*_steps(self), *_steps(other))

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({args})"


def _steps(p: Perturbation) -> tuple[Perturbation, ...]:
    return p.steps if isinstance(p, compose) else (p,)


def register_perturbation(cls: type) -> type:
    """Class decorator: a frozen dataclass registered under its class name."""
    doc = (cls.__doc__ or "").strip().splitlines()
    cls = dataclass(frozen=True, repr=False)(cls)
    return PERTURBATIONS.register(cls.__name__, description=doc[0] if doc else "",
                                  geometric=cls.geometric)(cls)


# ---- intensity ---------------------------------------------------------------------------------

@register_perturbation
class gaussian_noise(Perturbation):  # noqa: N801  (a value factory, named like hypothesis strategies)
    """Additive Gaussian noise of standard deviation ``sigma`` (in [0,1] intensity units)."""

    sigma: float = 0.02

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
        return (images + self.sigma * noise.to(images.device)).clamp(0, 1)


@register_perturbation
class brightness(Perturbation):  # noqa: N801
    """Add ``delta`` to every pixel (a global brightness change)."""

    delta: float = 0.05

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return (images + self.delta).clamp(0, 1)


@register_perturbation
class contrast(Perturbation):  # noqa: N801
    """Scale each image's deviation from its mean by ``factor``."""

    factor: float = 1.1

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * self.factor + mean).clamp(0, 1)


@register_perturbation
class gaussian_blur(Perturbation):  # noqa: N801
    """Gaussian blur of standard deviation ``sigma`` pixels (separable, reflect padding)."""

    sigma: float = 0.5

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.sigma <= 0:
            return images.clone()
        radius = max(1, math.ceil(3 * self.sigma))
        x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
        k = torch.exp(-0.5 * (x / self.sigma) ** 2)
        k = k / k.sum()
        c = images.shape[1]
        out = F.pad(images, (radius, radius, 0, 0), mode="reflect")
        out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
        out = F.pad(out, (0, 0, radius, radius), mode="reflect")
        out = F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
        return out.clamp(0, 1)


@register_perturbation
class jpeg(Perturbation):  # noqa: N801
    """JPEG-like quantisation: 8x8 block DCT quantised with the standard luminance table at ``quality``.

    The lossy step of baseline JPEG (ITU-T T.81, Annex K table K.1; IJG quality scaling), without
    chroma subsampling or entropy coding; images whose side is not a multiple of 8 are edge-padded.
    """

    quality: int = 90

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not 1 <= self.quality <= 100:
            raise ValueError(f"jpeg quality must be in [1, 100], got {self.quality}")
        b, c, h, w = images.shape
        ph, pw = (-h) % 8, (-w) % 8
        x = F.pad(images * 255 - 128, (0, pw, 0, ph), mode="replicate")
        blocks = x.unfold(2, 8, 8).unfold(3, 8, 8)  # [B,C,H/8,W/8,8,8]
        d = _dct_matrix(images.device, images.dtype)
        q = _quant_table(self.quality).to(images.device, images.dtype)
        coeff = d @ blocks @ d.T
        restored = d.T @ (torch.round(coeff / q) * q) @ d
        out = restored.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h + ph, w + pw)[..., :h, :w]
        return ((out + 128) / 255).clamp(0, 1)


_JPEG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
              14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
              49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


@lru_cache(maxsize=8)
def _dct_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k = torch.arange(8, dtype=torch.float64)
    d = torch.cos((2 * k[None] + 1) * k[:, None] * math.pi / 16) * math.sqrt(2 / 8)
    d[0] /= math.sqrt(2)
    return d.to(device, dtype)


def _quant_table(quality: int) -> torch.Tensor:
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    table = torch.tensor(_JPEG_LUMA, dtype=torch.float64).view(8, 8)
    return ((table * scale + 50) // 100).clamp(min=1)


# ---- geometric ---------------------------------------------------------------------------------

class _Affine(Perturbation):
    """A geometric perturbation given by a 2x3 affine matrix in normalised coordinates (border padding)."""

    geometric = True

    def theta(self) -> torch.Tensor:
        raise NotImplementedError

    def warp(self, maps: torch.Tensor) -> torch.Tensor:
        theta = self.theta().to(maps.device, maps.dtype).expand(maps.shape[0], 2, 3)
        grid = F.affine_grid(theta, list(maps.shape), align_corners=False)
        return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.warp(images).clamp(0, 1)


@register_perturbation
class rotate(_Affine):  # noqa: N801
    """Rotate by ``degrees`` counter-clockwise as displayed (about the centre; bilinear, border padding)."""

    degrees: float = 5.0

    def theta(self) -> torch.Tensor:
        a = math.radians(self.degrees)
        return torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]])


@register_perturbation
class shift(_Affine):  # noqa: N801
    """Translate by ``dx``, ``dy`` (fractions of the image width/height; positive = right/down)."""

    dx: float = 0.05
    dy: float = 0.0

    def theta(self) -> torch.Tensor:
        return torch.tensor([[[1.0, 0.0, -2 * self.dx], [0.0, 1.0, -2 * self.dy]]])


@register_perturbation
class hflip(Perturbation):  # noqa: N801
    """Mirror left-right (exact; no interpolation)."""

    geometric = True

    def warp(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.flip(-1)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.flip(-1)


@register_perturbation
class vflip(Perturbation):  # noqa: N801
    """Mirror top-bottom (exact; no interpolation)."""

    geometric = True

    def warp(self, maps: torch.Tensor) -> torch.Tensor:
        return maps.flip(-2)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.flip(-2)


# ---- composition -------------------------------------------------------------------------------

class compose(Perturbation):  # noqa: N801
    """Apply ``steps`` in order (``a >> b``); geometric if any step is, warping maps by the geometric steps."""

    def __init__(self, *steps: Perturbation) -> None:
        if not steps or not all(isinstance(s, Perturbation) for s in steps):
            raise ValueError("compose(...) needs one or more perturbations, e.g. compose(gaussian_noise(0.01), rotate(5))")
        self.steps = tuple(s for step in steps for s in _steps(step))

    @property
    def geometric(self) -> bool:  # type: ignore[override]
        return any(s.geometric for s in self.steps)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            images = step.apply(images, generator)
        return images

    def warp(self, maps: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            maps = step.warp(maps)
        return maps

    def __eq__(self, other: object) -> bool:
        return isinstance(other, compose) and self.steps == other.steps

    def __hash__(self) -> int:
        return hash(self.steps)

    def __repr__(self) -> str:
        return f"compose({', '.join(map(repr, self.steps))})"


PERTURBATIONS.register("compose", description="apply several perturbations in order (a >> b)",
                       geometric=None)(compose)


# ---- reading YAML ------------------------------------------------------------------------------

def parse_perturbation(text: str) -> Perturbation:
    """Read ``"name(arg=value, ...)"``, nested for ``compose(...)`` (literal arguments only; nothing is evaluated)."""
    try:
        return _build(ast.parse(str(text).strip(), mode="eval").body, text)
    except (SyntaxError, ValueError) as err:
        if isinstance(err, _BadArguments):
            raise ValueError(str(err)) from None
        raise ValueError(
            f"cannot read perturbation {text!r}: write name(arg=value), e.g. 'gaussian_noise(sigma=0.02)'; "
            f"known: {', '.join(PERTURBATIONS.names())}"
        ) from None


class _BadArguments(ValueError):
    pass


def _build(node: ast.AST, text: str) -> Perturbation:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError
    factory = PERTURBATIONS.get(node.func.id)
    if factory is compose:
        if node.keywords:
            raise ValueError
        return compose(*(_build(a, text) for a in node.args))
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    try:
        return factory(*args, **kwargs)
    except TypeError as err:
        raise _BadArguments(f"bad arguments in perturbation {text!r}: {err}") from None


def list_perturbations() -> list[tuple[str, str]]:
    return [(n, PERTURBATIONS.meta(n)["description"]) for n in PERTURBATIONS]
