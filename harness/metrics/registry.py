"""The metric registry: every metric function by name, with its category and direction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from harness.registry import Registry

METRICS: Registry = Registry("metric")

METRIC_CATEGORIES = (
    "performance", "localisation", "similarity", "attribution", "randomisation", "robustness",
    "complexity", "faithfulness", "statistics",
)


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: the batched torch function plus its metadata (like torchmetrics' class attributes).

    Attributes:
        name: the registered name (as written in YAML and listed by ``xai-harness list metrics``).
        fn: the pure batched function.
        category: one of :data:`METRIC_CATEGORIES`.
        higher_is_better: direction of improvement (None where there is none, e.g. a p-value).
        needs_mask: whether the metric reads a ground-truth mask.
        description: first line of the function's docstring.
    """

    name: str
    fn: Callable
    category: str
    higher_is_better: bool | None
    needs_mask: bool
    description: str


def register_metric(name: str, *, category: str, higher_is_better: bool | None = True,
                    needs_mask: bool = False) -> Callable[[Callable], Callable]:
    """Decorator registering a metric function under ``name`` (the function is returned unchanged)."""
    if category not in METRIC_CATEGORIES:
        raise ValueError(f"unknown metric category {category!r}; known: {', '.join(METRIC_CATEGORIES)}")

    def decorate(fn: Callable) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()
        if not doc:
            raise ValueError(f"metric {name!r} needs a docstring (its first line is the description)")
        spec = MetricSpec(name, fn, category, higher_is_better, needs_mask, doc[0])
        METRICS.register(name, category=category)(spec)
        return fn

    return decorate


def get_metric(name: str) -> MetricSpec:
    return METRICS.get(name)


def list_metrics() -> list[MetricSpec]:
    """Every registered metric, sorted by name (importing ``harness.metrics`` registers them all)."""
    return [METRICS.get(n) for n in METRICS.names()]
