"""Input perturbations as small immutable values: ``gaussian_noise(sigma=0.02)``, ``brightness(0.05)``.

Each value applies to float images in [0,1] with an explicit seeded generator, and its ``repr``
reads back with ``parse_perturbation`` (the form written in YAML suites).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, fields

import torch

from harness.registry import Registry

PERTURBATIONS: Registry = Registry("perturbation")


class Perturbation:
    """Base class: ``apply(images, generator) -> images`` (clamped to [0,1])."""

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({args})"


@PERTURBATIONS.register("gaussian_noise")
@dataclass(frozen=True, repr=False)
class gaussian_noise(Perturbation):  # noqa: N801  (a value factory, named like hypothesis strategies)
    """Additive Gaussian noise of standard deviation ``sigma`` (in [0,1] intensity units)."""

    sigma: float = 0.02

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
        return (images + self.sigma * noise.to(images.device)).clamp(0, 1)


@PERTURBATIONS.register("brightness")
@dataclass(frozen=True, repr=False)
class brightness(Perturbation):  # noqa: N801
    """Add ``delta`` to every pixel (a global brightness change)."""

    delta: float = 0.05

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return (images + self.delta).clamp(0, 1)


@PERTURBATIONS.register("contrast")
@dataclass(frozen=True, repr=False)
class contrast(Perturbation):  # noqa: N801
    """Scale each image's deviation from its mean by ``factor``."""

    factor: float = 1.1

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return ((images - mean) * self.factor + mean).clamp(0, 1)


def parse_perturbation(text: str) -> Perturbation:
    """Read ``"name(arg=value, ...)"`` (literal arguments only; nothing is evaluated)."""
    try:
        call = ast.parse(str(text).strip(), mode="eval").body
        if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
            raise ValueError
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError):
        raise ValueError(
            f"cannot read perturbation {text!r}: write name(arg=value), e.g. 'gaussian_noise(sigma=0.02)'; "
            f"known: {', '.join(PERTURBATIONS.names())}"
        ) from None
    factory = PERTURBATIONS.get(call.func.id)
    try:
        return factory(*args, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments in perturbation {text!r}: {err}") from None


def list_perturbations() -> list[tuple[str, str]]:
    return [(n, (PERTURBATIONS.get(n).__doc__ or "").strip().splitlines()[0]) for n in PERTURBATIONS]
