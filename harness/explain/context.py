"""ModelContext: everything checks need about one model, computed once and shared.

Predictions and explanations are cached per (split, explainer), so ten checks that read
Grad-CAM maps of the test split cost one Grad-CAM pass.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable

import torch
from torch import nn

from harness.data import ImageSet, load_dataset
from harness.explain import create_explainer

log = logging.getLogger(__name__)

POSITIVE_CLASS = 1


@dataclass
class ModelContext:
    """One model under test with its test data.

    Args:
        name: zoo name (or the checkpoint's file stem for ``--checkpoint``).
        model: the loaded ClassifierNet (evaluated in eval mode).
        manifest: its checkpoint manifest (architecture, dataset, recipe, seed, epoch...).
        load_previous: returns the previous epoch's model of the same run, or None if there is none.
        max_images: cap on images per split (None = all), the first ones in dataset order.
        batch_size: batch size for inference and explanations.
        finding: for a multi-label model, the finding whose score, maps and masks the checks read
            (default: the only finding; a model with several needs one, e.g. ``--finding effusion``).
        load_seed: returns the same zoo model trained with another seed (training it on first use),
            or None where that is impossible (an external checkpoint).
        load_shuffled: returns the same zoo model trained on permuted training labels (the data
            randomisation test), or None where that is impossible.
    """

    name: str
    model: nn.Module
    manifest: dict[str, Any]
    load_previous: Callable[[], nn.Module | None] = lambda: None
    max_images: int | None = None
    batch_size: int = 64
    finding: str | None = None
    load_seed: Callable[[int], nn.Module | None] = lambda seed: None
    load_shuffled: Callable[[int], nn.Module | None] = lambda label_seed: None
    _datasets: dict[str, ImageSet] = field(default_factory=dict, repr=False)
    _probs: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict, repr=False)
    _maps: dict[tuple[int, str, str], torch.Tensor] = field(default_factory=dict, repr=False)
    _memo: dict[tuple, Any] = field(default_factory=dict, repr=False)

    @property
    def architecture(self) -> str:
        return str(self.manifest["architecture"])

    @property
    def seed(self) -> int:
        return int(self.manifest.get("seed", 0))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @cached_property
    def num_classes(self) -> int:
        """Number of logits the model returns (2 for a binary softmax model)."""
        size = int(self.manifest.get("img_size", 64))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return int(self.model(torch.zeros(1, 1, size, size, device=self.device)).shape[1])
        finally:
            self.model.train(was_training)

    @property
    def multilabel(self) -> bool:
        return bool(getattr(self.model, "multilabel", False))

    @cached_property
    def target_class(self) -> int:
        """The logit explained and scored: the positive class, or the finding's index (multi-label)."""
        if not self.multilabel:
            return POSITIVE_CLASS
        data = self.dataset("test")
        if self.finding is None and len(data.finding_names) != 1:
            raise ValueError(f"multi-label model {self.name!r}: choose the finding to check with --finding "
                             f"(one of {', '.join(data.finding_names)})")
        return data.finding_index(self.finding) if self.finding else 0

    def target_tensor(self, n: int) -> torch.Tensor:
        """The explained class for ``n`` images, int64 ``[n]``."""
        return torch.full((n,), self.target_class, dtype=torch.long)

    def scores(self, split: str, model: nn.Module | None = None) -> torch.Tensor:
        """``[N]`` probability of the checked finding (the positive class for binary models)."""
        probs = self.probs(split, model)
        return probs[:, self.target_class] if probs.ndim == 2 else probs

    def labels(self, split: str) -> torch.Tensor:
        """``[N]`` labels of the checked finding (1 = present)."""
        labels = self.dataset(split).labels
        return labels[:, self.target_class] if labels.ndim == 2 else labels

    def lesion_masks(self, split: str) -> torch.Tensor:
        """bool ``[N,1,H,W]`` ground-truth masks of the checked finding."""
        masks = self.dataset(split).lesion_masks
        k = self.target_class if self.multilabel else 0
        return masks[:, k:k + 1] if masks.shape[1] > 1 else masks

    def dataset(self, split: str, **overrides: Any) -> ImageSet:
        """The model's own dataset configuration (as trained), at the model's resolution.

        ``overrides`` change dataset options, e.g. ``shortcuts={}`` renders the same images
        without artifacts (a counterfactual of the same patients and lesions).
        """
        key = split + (json.dumps(overrides, sort_keys=True) if overrides else "")
        if key not in self._datasets:
            spec = self.manifest["dataset"]
            options = {**spec.get("options", {}), **overrides, "size": int(self.manifest["img_size"])}
            data = load_dataset(spec["name"], split, **options)
            if self.max_images is not None and len(data) > self.max_images:
                data = data.subset(torch.arange(self.max_images))
            self._datasets[key] = data
        return self._datasets[key]

    def images(self, split: str) -> torch.Tensor:
        return self.dataset(split).as_float()

    def probs(self, split: str, model: nn.Module | None = None) -> torch.Tensor:
        """Probability of the positive class ``[N]`` (multi-label: of every finding, ``[N,K]``), on the CPU."""
        model = model or self.model
        key = (id(model), split)
        if key not in self._probs:
            self._probs[key] = predict_probs(model, self.images(split), self.batch_size)
        return self._probs[key]

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per ``key`` for this model: results shared by several checks (e.g. a
        random-order baseline every explainer is compared with)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def explainer(self, name: str):
        return _explainer(name)

    def maps(self, explainer: str, split: str, model: nn.Module | None = None) -> torch.Tensor:
        """Raw maps ``[N,1,H,W]`` (CPU) of the checked class for every image of ``split``."""
        model = model or self.model
        key = (id(model), explainer, split)
        if key not in self._maps:
            images = self.images(split)
            self._maps[key] = explain_batched(model, self.explainer(explainer), images, self.batch_size,
                                              target=self.target_class)
        return self._maps[key]

    def unit_maps(self, explainer: str, split: str, model: nn.Module | None = None) -> torch.Tensor:
        """The explainer's [0,1] display view of ``maps``."""
        return self.explainer(explainer).unit_view(self.maps(explainer, split, model))

    @cached_property
    def previous_model(self) -> nn.Module | None:
        return self.load_previous()


def predict_probs(model: nn.Module, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probability of the positive class ``[N]`` (multi-label: sigmoid ``[N,K]``), batched, in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        with torch.no_grad():
            for chunk in images.split(batch_size):
                logits = model(chunk.to(device)).float()
                multilabel = getattr(model, "multilabel", False)
                out.append((logits.sigmoid() if multilabel else logits.softmax(1)[:, POSITIVE_CLASS]).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def explain_batched(model: nn.Module, explainer, images: torch.Tensor, batch_size: int,
                    target: int | torch.Tensor = POSITIVE_CLASS) -> torch.Tensor:
    """Explain ``target`` (one class for all, or one per image) for every image, batched; returns CPU maps."""
    device = next(model.parameters()).device
    targets = torch.as_tensor(target, dtype=torch.long).expand(images.shape[0])
    out = []
    for chunk, chunk_targets in zip(images.split(batch_size), targets.split(batch_size)):
        out.append(explainer(model, chunk.to(device), chunk_targets.to(device)).detach().float().cpu())
    return torch.cat(out) if out else torch.empty(0, *images.shape[1:])


_EXPLAINERS: dict[str, Any] = {}


def _explainer(name: str):
    if name not in _EXPLAINERS:
        _EXPLAINERS[name] = create_explainer(name)
    return _EXPLAINERS[name]
