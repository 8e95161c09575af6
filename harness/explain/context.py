"""ModelContext: one model under test with its data, predictions and explanations, computed once and shared.

Predictions and explanations are cached per (split, explainer), so ten checks that read
Grad-CAM maps of the test split cost one Grad-CAM pass. The models some checks compare with (the
previous epoch, another seed, a label-shuffled twin) come from ``twins``, a
:class:`harness.models.provision.Twins` that the session's provider supplies.
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
from harness.explain.base import EXPLAINERS, Explainer
from harness.models.provision import Twins

log = logging.getLogger(__name__)

POSITIVE_CLASS = 1


@dataclass
class ModelContext:
    """One model under test with its test data.

    Args:
        name: zoo name (or the checkpoint's file stem for ``--checkpoint``).
        model: the loaded ClassifierNet (evaluated in eval mode).
        manifest: its checkpoint manifest (architecture, dataset, recipe, seed, epoch...).
        twins: the models checks compare with (previous epoch, another seed, shuffled labels);
            the default has none, and the checks that need one skip with the reason.
        max_images: cap on images per split (None = all), the first ones in dataset order.
        batch_size: batch size for inference and explanations.
        finding: for a multi-label model, the finding whose score, maps and masks the checks read
            (default: the only finding; a model with several needs one, e.g. ``--finding effusion``).
        seed: the run seed; seeds the control explainers (their noise depends on it and on the call,
            never on the image).
        explainers: explainer instances by name, this model's own (a control's call counter is
            per model); names not given are created from the registry on first use.
    """

    name: str
    model: nn.Module
    manifest: dict[str, Any]
    twins: Twins = field(default_factory=Twins)
    max_images: int | None = None
    batch_size: int = 64
    finding: str | None = None
    seed: int = 0
    explainers: dict[str, Explainer] = field(default_factory=dict, repr=False)
    _datasets: dict[str, ImageSet] = field(default_factory=dict, repr=False)
    _probs: dict[tuple[int, str], torch.Tensor] = field(default_factory=dict, repr=False)
    _maps: dict[tuple[int, str, str], torch.Tensor] = field(default_factory=dict, repr=False)
    _memo: dict[tuple, Any] = field(default_factory=dict, repr=False)

    @property
    def architecture(self) -> str:
        return str(self.manifest["architecture"])

    @property
    def family(self) -> str:
        """``vit`` for a vision transformer (token model), else ``cnn``: suites can override per family."""
        return "vit" if getattr(self.model, "is_vit", False) else "cnn"

    @property
    def training_seed(self) -> int:
        """The seed the model was trained with (from its manifest)."""
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

    def score_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[N]`` probability of the checked finding for images outside the splits (perturbed, occluded,
        counterfactual renders), batched; multi-label models are read on the checked finding."""
        probs = predict_probs(self.model, images, self.batch_size)
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

    def patients(self, split: str) -> torch.Tensor:
        """``[N]`` patient id of every image: the bootstrap resamples patients, not images."""
        return self.dataset(split).patient_ids

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

    def for_finding(self, finding: str) -> ModelContext:
        """This model checked on another finding (a suite item's ``finding`` parameter), made once.

        The sibling shares the data and predictions (they do not depend on the finding) but keeps its
        own maps and memo, which do. It uses this context's explainer instances (a stand-in or a user's
        own instance set in ``explainers`` explains every finding), except the controls: their noise is
        drawn per context and call, so each sibling makes its own. ``finding`` must be one of the
        dataset's findings.
        """
        if not self.multilabel:
            raise ValueError(f"model {self.name!r} is not multi-label: drop the 'finding' parameter")
        data = self.dataset("test")
        finding = data.finding_names[data.finding_index(finding)]  # an unknown name raises, listing the findings
        if self.finding is not None and data.finding_index(self.finding) == data.finding_names.index(finding):
            return self
        def sibling() -> ModelContext:
            shared = {name: e for name, e in self.explainers.items()
                      if not (name in EXPLAINERS and EXPLAINERS.meta(name).get("is_control"))}
            return ModelContext(self.name, self.model, self.manifest, self.twins, self.max_images, self.batch_size,
                                finding, self.seed, explainers=shared, _datasets=self._datasets, _probs=self._probs)

        return self.memo(("for_finding", finding), sibling)

    def explainer(self, name: str) -> Explainer:
        """This model's instance of explainer ``name`` (controls seeded with the run seed)."""
        if name not in self.explainers:
            self.explainers[name] = create_context_explainer(name, self.seed)
        return self.explainers[name]

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
        return self.twins.previous_epoch()


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


def create_context_explainer(name: str, seed: int) -> Explainer:
    """A registered explainer; controls that draw noise get the run's ``seed``."""
    import inspect

    from harness.explain import create_explainer  # registers the built-in explainers

    create = EXPLAINERS.get(name)
    takes_seed = create.is_control and "seed" in inspect.signature(create).parameters
    return create_explainer(name, seed=seed) if takes_seed else create_explainer(name)
