"""Every registered metric: metadata, and a run on a small canonical input of its kind (float64, documented shape).

Table-driven: ``RECIPES`` maps each registered name to the call that exercises it. A metric registered
without a recipe fails ``test_every_registered_metric_has_a_recipe`` with its name, so a new metric
cannot slip in untested.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import pytest
import torch
from torch import nn

import harness.metrics  # noqa: F401  (registers every metric)
from harness.metrics.registry import METRIC_CATEGORIES, get_metric, list_metrics

B, N, K, SIZE = 3, 40, 4, 24  # images, samples, classes, map side (HOG needs >= 8 px x 3 cells)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binary() -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, N]`` scores and labels (both classes in every row): one value per row."""
    labels = torch.zeros(B, N, dtype=torch.long)
    labels[:, ::3] = 1
    return torch.rand(B, N, generator=_generator()), labels


def probabilities() -> tuple[torch.Tensor, torch.Tensor]:
    """``[N]`` positive-class probabilities and binary labels (the ECE reads one set)."""
    scores, labels = binary()
    return scores[0], labels[0]


def multilabel() -> tuple[torch.Tensor, torch.Tensor]:
    """``[N, K]`` scores and multi-hot labels."""
    labels = (torch.rand(N, K, generator=_generator(1)) < 0.4).long()
    labels[0], labels[1] = 1, 0
    return torch.rand(N, K, generator=_generator(2)), labels


def maps01() -> torch.Tensor:
    return torch.rand(B, 1, SIZE, SIZE, generator=_generator(3))


def mask() -> torch.Tensor:
    m = torch.zeros(B, 1, SIZE, SIZE, dtype=torch.bool)
    m[..., 4:12, 6:16] = True
    return m


def map_and_mask() -> tuple[torch.Tensor, torch.Tensor]:
    return maps01(), mask()


def map_pair() -> tuple[torch.Tensor, torch.Tensor]:
    return maps01(), torch.rand(B, 1, SIZE, SIZE, generator=_generator(4))


def single_map() -> tuple[torch.Tensor]:
    return (maps01() - 0.3,)


class Tiny(nn.Module):
    """A two-class linear model on ``[B, 1, 8, 8]`` images (seeded)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 2)
        with torch.no_grad():  # seeded without touching the global RNG
            self.linear.weight.copy_(0.1 * torch.randn(2, 64, generator=_generator(7)))
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))


def gradient_x_input(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    x = images.detach().clone().requires_grad_(True)
    score = model(x).gather(1, targets[:, None]).sum()
    (grad,) = torch.autograd.grad(score, x)
    return (grad * x).detach()


def images_and_targets() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(B, 1, 8, 8, generator=_generator(5)) + 0.1, torch.tensor([0, 1, 0])


def model_explainer() -> tuple[Any, ...]:
    """Randomisation: ``(model, explain_fn(model, images, targets), images, targets)``."""
    return (Tiny().eval(), gradient_x_input, *images_and_targets())


def explainer_only() -> tuple[Any, ...]:
    """Robustness: ``(explain_fn(images, targets), images, targets)``."""
    model = Tiny().eval()
    return (lambda x, t: gradient_x_input(model, x, t), *images_and_targets())


def model_images_maps() -> tuple[Any, ...]:
    """Faithfulness: ``(model, images, maps, targets)``."""
    model = Tiny().eval()
    images, targets = images_and_targets()
    return model, images, gradient_x_input(model, images, targets), targets


class Recipe(NamedTuple):
    inputs: Callable[[], tuple[Any, ...]]
    shape: tuple[int, ...]
    options: dict[str, Any] = {}


ROW = Recipe(binary, (B,))
PER_IMAGE = Recipe(map_and_mask, (B,))
SIMILARITY = Recipe(map_pair, (B,))

RECIPES: dict[str, Recipe] = {
    # performance: reduce the last axis of [B, N]
    **{name: ROW for name in ("accuracy", "auprc", "auroc", "f1", "fnr", "fpr", "precision", "sensitivity",
                              "specificity")},
    "expected_calibration_error": Recipe(probabilities, ()),
    "macro_auroc": Recipe(multilabel, ()),
    # localisation: maps [B,1,H,W] and masks -> [B]; miou averages over images
    **{name: PER_IMAGE for name in ("diffgradcam", "ehr_auc", "energy_pointing_game", "iou", "localisation_auc",
                                    "lesion_focus", "pointing_game", "relevance_mass", "relevance_rank", "segmentation_iou")},
    "top_k_intersection": Recipe(map_and_mask, (B,), {"k": 20}),
    "miou": Recipe(map_and_mask, ()),
    # attribution
    "region_share": PER_IMAGE,
    "region_share_ratio": PER_IMAGE,
    "extrathoracic_share": PER_IMAGE,
    "border_share": Recipe(single_map, (B,), {"width": 2}),
    # similarity of two batches of maps
    **{name: SIMILARITY for name in ("pearson", "spearman", "spearman_abs", "ssim", "hog_similarity")},
    # complexity of one batch of maps
    "sparseness": Recipe(single_map, (B,)),
    "complexity": Recipe(single_map, (B,)),
    # robustness, randomisation, faithfulness: a tiny model and a gradient x input explainer
    "max_sensitivity": Recipe(explainer_only, (B,), {"n_samples": 2, "generator": _generator(6)}),
    "avg_sensitivity": Recipe(explainer_only, (B,), {"n_samples": 2, "generator": _generator(6)}),
    "mprt": Recipe(model_explainer, (B,)),
    "random_logit": Recipe(model_explainer, (B,), {"num_classes": 2}),
    "deletion_auc": Recipe(model_images_maps, (B,), {"n_steps": 4}),
    "insertion_auc": Recipe(model_images_maps, (B,), {"n_steps": 4}),
}

NAMES = [spec.name for spec in list_metrics()]


def test_every_registered_metric_has_a_recipe():
    missing = sorted(set(NAMES) - set(RECIPES))
    assert not missing, f"add an input recipe to tests/test_metrics_registry.py::RECIPES for {missing}"
    assert len(NAMES) >= 30  # importing harness.metrics registered the metric modules


@pytest.mark.parametrize("name", NAMES)
def test_metadata(name):
    spec = get_metric(name)
    assert spec.name == name and spec.category in METRIC_CATEGORIES
    assert spec.description and not spec.description.endswith(":")
    assert spec.higher_is_better in (True, False, None) and isinstance(spec.needs_mask, bool)
    assert spec.fn.__doc__ and spec.fn.__module__.startswith("harness.metrics.")


@pytest.mark.parametrize("name", NAMES)
def test_runs_on_its_canonical_input(name, one_thread):
    if name not in RECIPES:
        pytest.fail(f"no input recipe for metric {name!r} in RECIPES")
    recipe = RECIPES[name]
    value = get_metric(name).fn(*recipe.inputs(), **recipe.options)
    assert isinstance(value, torch.Tensor), type(value)
    assert value.dtype == torch.float64 and tuple(value.shape) == recipe.shape
    assert torch.isfinite(value).all(), value


def test_mask_metrics_are_flagged():
    for spec in list_metrics():
        if spec.category == "localisation":
            assert spec.needs_mask, spec.name
        if spec.category in ("performance", "similarity", "complexity"):
            assert not spec.needs_mask, spec.name
