"""Explain stage: saliency explainers with one contract (raw signed ``Tensor[B,1,H,W]``, one target per sample).

Registered explainers by category (``list_explainers()`` gives name, description, is_control;
``EXPLAINERS.meta(name)["category"]`` the category):

* ``cam``: ``gradcam``, ``gradcam++`` (batched torch), ``scorecam`` (batched torch),
  ``gradcam-lib``, ``gradcam++-lib`` (pytorch-grad-cam references), ``hirescam``, ``xgradcam``,
  ``layercam``, ``eigencam`` (pytorch-grad-cam; Eigen-CAM ignores the target).
* ``gradient``: ``gradient`` (input gradient), ``gradient_x_input``, ``integrated_gradients``,
  ``smoothgrad``, ``guided_backprop`` (ReLU networks only).
* ``lrp``: ``lrp_epsilon_plus_flat``, ``lrp_epsilon_gamma_box`` (zennit; torchvision ResNet/VGG
  and plain ``nn.Sequential`` CNNs only).
* ``control`` (model-independent): ``random``, ``edge``, ``constant``.

An explainer that cannot explain a model faithfully raises :class:`ExplainerUnsupported` with the
reason (the checks stage reports it as a skip). ``context.py`` holds the ModelContext: one model
under test with its data, predictions and explanations, computed once and shared by every check.
"""

from __future__ import annotations

from harness.explain.base import (
    CATEGORIES,
    EXPLAINERS,
    Explainer,
    ExplainerUnsupported,
    check_targets,
    normalise_maps,
    register_explainer,
    unit_view,
)
from harness.explain.controls import ConstantMap, EdgeMap, RandomMap  # importing a module registers its explainers
from harness.explain.gradcam import CAMExplainer, GradCAM, GradCAMPlusPlus, ScoreCAM, layer_view
from harness.explain.gradient import (
    GradientExplainer,
    GradientXInput,
    GuidedBackprop,
    InputGradient,
    IntegratedGradients,
    SmoothGrad,
)
from harness.explain.library import (
    EigenCAM,
    HiResCAM,
    LayerCAM,
    LibraryCAM,
    LibraryGradCAM,
    LibraryGradCAMPlusPlus,
    XGradCAM,
)
from harness.explain.lrp import LRPEpsilonGammaBox, LRPEpsilonPlusFlat, LRPExplainer


def create_explainer(name: str, **options: object) -> Explainer:
    """An explainer instance by registered name; ``options`` go to its constructor."""
    return EXPLAINERS.get(name)(**options)


def list_explainers() -> list[tuple[str, str, bool]]:
    """``(name, description, is_control)`` of every registered explainer, sorted by name."""
    return [(n, EXPLAINERS.meta(n)["description"], EXPLAINERS.meta(n)["is_control"]) for n in EXPLAINERS.names()]


__all__ = [
    "CATEGORIES",
    "EXPLAINERS",
    "CAMExplainer",
    "ConstantMap",
    "EdgeMap",
    "EigenCAM",
    "Explainer",
    "ExplainerUnsupported",
    "GradCAM",
    "GradCAMPlusPlus",
    "GradientExplainer",
    "GradientXInput",
    "GuidedBackprop",
    "HiResCAM",
    "InputGradient",
    "IntegratedGradients",
    "LRPEpsilonGammaBox",
    "LRPEpsilonPlusFlat",
    "LRPExplainer",
    "LayerCAM",
    "LibraryCAM",
    "LibraryGradCAM",
    "LibraryGradCAMPlusPlus",
    "RandomMap",
    "ScoreCAM",
    "SmoothGrad",
    "XGradCAM",
    "check_targets",
    "create_explainer",
    "layer_view",
    "list_explainers",
    "normalise_maps",
    "register_explainer",
    "unit_view",
]
