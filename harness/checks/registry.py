"""The check registry: a check turns a model context into a Measurement."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.registry import Registry

CHECKS: Registry = Registry("check")


class CheckSkipped(Exception):
    """Raised by a check that cannot run for a stated reason (becomes verdict ``skip``)."""


class CheckInvalid(Exception):
    """Raised by a check that ran but whose measurement cannot be trusted (too few images kept):
    verdict ``error`` with the message, never a pass or a skip."""


@dataclass(frozen=True)
class Measurement:
    """What a check measured: the estimate, its 95% CI (NaN if none), n images, n patients, details.

    ``reference``: what the value is relative to, measured in the same run where it applies, e.g.
    ``{"name": "uniform map", "value": 1.0}`` (see each check's ``reference`` in the registry).
    """

    metric: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    n_patients: int = 0
    reference: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, metric: str, boot: Any, details: dict[str, Any] | None = None,
           reference: dict[str, Any] | None = None) -> Measurement:
        """A measurement from a :class:`~harness.metrics.stats.BootstrapResult` (n and n_patients included).

        A result that carries per-image samples (``harness.checks.samples``) puts them in
        ``details["samples"]``, so a later run can compare with this one image by image.
        """
        details = dict(details or {})
        if getattr(boot, "samples", None):
            details.setdefault("samples", boot.samples)
        return cls(metric, boot.estimate, boot.low, boot.high, boot.n, details, boot.n_groups,
                   dict(reference or {}))


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its function, category, description and whether it needs an explainer."""

    name: str
    fn: Callable[..., Measurement]
    category: str
    description: str
    needs_explainer: bool
    defaults: dict[str, Any]
    reference: str = "absolute"
    chance: float | None = None  # what a map that knows nothing scores; calibration never gates below it


def register_check(name: str, *, category: str, needs_explainer: bool = True, reference: str = "absolute",
                   chance: float | None = None, **defaults: Any):
    """Register ``fn(ctx, explainer, **params) -> Measurement`` under ``name``.

    ``reference`` says what the value is relative to: ``absolute`` (a fixed scale such as AUROC),
    or the reference measured in the same run (``random pixel order``, ``uniform map``,
    ``label-shuffled twin``, ``previous epoch``...). A relative value holds across resolutions and
    profiles where an absolute one would need a threshold per setting. ``chance``: the value of a
    map that knows nothing (a uniform map, a random ranking), where the statistic has a fixed one:
    ``xai-harness calibrate`` never proposes a gate below it.
    """

    def decorate(fn: Callable[..., Measurement]) -> Callable[..., Measurement]:
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = CheckSpec(name, fn, category, doc[0] if doc else "", needs_explainer, defaults, reference, chance)
        CHECKS.register(name, category=category, reference=reference)(spec)
        return fn

    return decorate


def get_check(name: str) -> CheckSpec:
    _import_builtin()
    return CHECKS.get(name)


def list_checks() -> list[CheckSpec]:
    _import_builtin()
    return [CHECKS.get(n) for n in CHECKS.names()]


def _import_builtin() -> None:
    from harness.checks import (  # noqa: F401  (each module registers its checks)
        consistency,
        context_swap,
        faithfulness,
        localisation,
        offanatomy,
        performance,
        prediction_shift,
        randomisation,
        shortcut,
        stability,
    )
