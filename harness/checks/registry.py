"""The check registry: a check turns a model context into a Measurement."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.registry import Registry

CHECKS: Registry = Registry("check")


class CheckSkipped(Exception):
    """Raised by a check that cannot run for a stated reason (becomes verdict ``skip``)."""


@dataclass(frozen=True)
class Measurement:
    """What a check measured: the estimate, its 95% CI (NaN if none), n, and extra details."""

    metric: str
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    n: int = 0
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckSpec:
    """A registered check: its function, category, description and whether it needs an explainer."""

    name: str
    fn: Callable[..., Measurement]
    category: str
    description: str
    needs_explainer: bool
    defaults: dict[str, Any]


def register_check(name: str, *, category: str, needs_explainer: bool = True, **defaults: Any):
    """Register ``fn(ctx, explainer, **params) -> Measurement`` under ``name``."""

    def decorate(fn: Callable[..., Measurement]) -> Callable[..., Measurement]:
        doc = (fn.__doc__ or "").strip().splitlines()
        spec = CheckSpec(name, fn, category, doc[0] if doc else "", needs_explainer, defaults)
        CHECKS.register(name, category=category)(spec)
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
        faithfulness,
        localisation,
        performance,
        randomisation,
        shortcut,
        stability,
    )
