"""Explain stage: saliency explainers with one contract (raw signed ``Tensor[B,1,H,W]``, one target per sample).

Registered explainers (``list_explainers()`` gives name, description, is_control):
``gradcam``, ``gradcam++`` (batched torch), ``gradcam-lib``, ``gradcam++-lib`` (pytorch-grad-cam
references), ``gradient`` (input gradient), and the controls ``random`` and ``edge``.
"""

from __future__ import annotations

from harness.explain.base import (
    EXPLAINERS,
    Explainer,
    check_targets,
    normalise_maps,
    register_explainer,
    unit_view,
)
from harness.explain.controls import EdgeMap, RandomMap  # importing a module registers its explainers
from harness.explain.gradcam import CAMExplainer, GradCAM, GradCAMPlusPlus, layer_view
from harness.explain.gradient import InputGradient
from harness.explain.library import LibraryCAM, LibraryGradCAM, LibraryGradCAMPlusPlus


def create_explainer(name: str, **options: object) -> Explainer:
    """An explainer instance by registered name; ``options`` go to its constructor."""
    return EXPLAINERS.get(name)(**options)


def list_explainers() -> list[tuple[str, str, bool]]:
    """``(name, description, is_control)`` of every registered explainer, sorted by name."""
    return [(n, EXPLAINERS.meta(n)["description"], EXPLAINERS.meta(n)["is_control"]) for n in EXPLAINERS.names()]


__all__ = [
    "EXPLAINERS",
    "CAMExplainer",
    "EdgeMap",
    "Explainer",
    "GradCAM",
    "GradCAMPlusPlus",
    "InputGradient",
    "LibraryCAM",
    "LibraryGradCAM",
    "LibraryGradCAMPlusPlus",
    "RandomMap",
    "check_targets",
    "create_explainer",
    "layer_view",
    "list_explainers",
    "normalise_maps",
    "register_explainer",
    "unit_view",
]
