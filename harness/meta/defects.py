"""The defect zoo: models and explainers with a known flaw, each with the checks meant to catch it.

Kinds of defect:

- ``trained``: a zoo entry the trainer builds from the family's healthy entry with other data or
  another recipe (shortcut models at three strengths, label-shuffled data, a few steps only, a token
  burned into most positives that no check is told about);
- ``weights``: a transform of the healthy model (all weights re-initialised);
- ``explainer``: the healthy model explained by a broken explainer that stands in for the suite's
  own (model-independent edge or constant maps, Guided Backprop, maps that jump under tiny noise,
  maps shifted off the lesion or blurred over the lung);
- ``twins``: the healthy model with a wrong twin (another seed's model presented as the previous
  epoch).

``intended`` names the checks whose job it is to catch the defect; the matrix reports every other
check too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from harness.explain.base import Explainer
from harness.registry import Registry

DEFECTS: Registry["Defect"] = Registry("defect")
ARTIFACTS = ("chest_drain", "marker", "border")
# A shortcut's strength is the share of positives that carry the artifact; few negatives do. That is
# how chest drains behave (they mark the treated pneumothoraces, Oakden-Rayner et al. 2020): an
# artifact on 60% of positives and 5% of negatives is already a strong cue.
STRENGTHS = (0.60, 0.80, 0.95)  # P(artifact | positive)
NEGATIVE_RATE = 0.05  # P(artifact | negative)
OTHER_ARTIFACT_RATE = 0.3  # the artifacts a shortcut model is not keyed on, as in the healthy data


@dataclass(frozen=True)
class Intended:
    """Matches suite checks by registered check name and/or category, and a subset of their params."""

    check: str | None = None
    category: str | None = None
    params: tuple[tuple[str, Any], ...] = ()

    def matches(self, check: str, category: str, params: dict[str, Any]) -> bool:
        if self.check is not None and check != self.check:
            return False
        if self.category is not None and category != self.category:
            return False
        return all(params.get(k) == v for k, v in self.params)

    def __str__(self) -> str:
        what = self.check or f"{self.category} checks"
        return what + "".join(f"[{k}={v}]" for k, v in self.params)


@dataclass(frozen=True)
class Defect:
    """One defect of the zoo (see the module docstring for the kinds)."""

    name: str
    kind: str
    description: str
    intended: tuple[Intended, ...]
    dataset: str | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    replaces: tuple[str, ...] = ()
    stand_in: Callable[[Explainer], Explainer] | None = None

    def intends(self, check: str, category: str, params: dict[str, Any]) -> bool:
        return any(i.matches(check, category, params) for i in self.intended)

    def explainers(self, create: Callable[[str], Explainer]) -> dict[str, Explainer]:
        """Explainer defects: each replaced suite explainer -> its stand-in built from ``create(name)``."""
        return {name: self.stand_in(create(name)) for name in self.replaces} if self.stand_in else {}


def register_defect(defect: Defect) -> Defect:
    DEFECTS.register(defect.name, kind=defect.kind, description=defect.description)(defect)
    return defect


def list_defects() -> list[Defect]:
    return [DEFECTS.get(n) for n in DEFECTS.names()]


def get_defect(name: str) -> Defect:
    return DEFECTS.get(name)


# ------------------------------------------------------------------------------------------------
# Explainers that stand in for the suite's own


class StandIn(Explainer):
    """A broken explainer presented as a real one (judged like one, never as a control)."""

    name = "stand-in"
    description = "defect zoo stand-in"
    category = "gradient"
    is_control = False
    view = "minmax"

    def __init__(self, label: str, fn: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        self.label, self.fn = label, fn

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.fn(model, images, targets)

    def __repr__(self) -> str:
        return f"StandIn({self.label!r})"


def _unit_of(base: Explainer):
    return lambda model, images, targets: base.unit_view(base(model, images, targets))


def _content_offsets(images: torch.Tensor, span: int) -> list[tuple[int, int]]:
    """Per image, a shift in [-span, span]^2 from a hash of its bytes: any change of a pixel moves it."""
    out = []
    for image in images.detach().to("cpu", torch.float32):
        digest = hashlib.blake2b(image.numpy().tobytes(), digest_size=4).digest()
        out.append((digest[0] % (2 * span + 1) - span, digest[1] % (2 * span + 1) - span))
    return out


def jumpy(base: Explainer) -> StandIn:
    """The base map, shifted by an offset hashed from the image's bytes: tiny noise makes it jump."""
    def explain(model, images, targets):
        maps = _unit_of(base)(model, images, targets)
        span = max(1, images.shape[-1] // 4)
        return torch.stack([m.roll(offset, dims=(-2, -1)) for m, offset in zip(maps, _content_offsets(images, span))])

    return StandIn(f"jumpy {base.name}", explain)


def shifted(base: Explainer) -> StandIn:
    """The base map rolled by half the image side: the heat lands on the other lung, off the lesion."""
    def explain(model, images, targets):
        return _unit_of(base)(model, images, targets).roll(images.shape[-1] // 2, dims=-1)

    return StandIn(f"shifted {base.name}", explain)


def blurred(base: Explainer) -> StandIn:
    """The base map blurred with sigma = 1/6 of the side: the heat spreads over the whole lung."""
    from harness.data.texture import gaussian_blur

    def explain(model, images, targets):
        maps = _unit_of(base)(model, images, targets)
        return gaussian_blur(maps, torch.full((maps.shape[0],), images.shape[-1] / 6.0, device=maps.device))

    return StandIn(f"blurred {base.name}", explain)


def model_independent(kind: str) -> Callable[[Explainer], StandIn]:
    """The ``edge`` or ``constant`` control presented as a real explainer."""
    def make(base: Explainer) -> StandIn:
        from harness.explain import create_explainer

        control = create_explainer(kind)
        return StandIn(f"{kind} (model-independent)", lambda model, images, targets: control(model, images, targets))

    return make


def substitute(other: str) -> Callable[[Explainer], Explainer]:
    """Another registered explainer in place of the suite's (e.g. Guided Backprop for the gradient)."""
    def make(base: Explainer) -> Explainer:
        from harness.explain import create_explainer

        return create_explainer(other)

    return make


# ------------------------------------------------------------------------------------------------
# The zoo

_BOTH = ("gradcam", "gradient")
# A model that learned nothing ranks no better than chance: AUROC and AUPRC catch it. Its threshold
# metrics (all positive: sensitivity 1) and its calibration (P ~ 0.5 at prevalence 0.5) need not fail.
_PERFORMANCE = (Intended("auroc"), Intended("auprc"))
_RANDOMISATION = (Intended(check="model_randomisation"), Intended(check="data_randomisation"))
_LOCALISATION = (Intended(category="localisation"),)


def _shortcut(artifact: str, strength: float) -> Defect:
    shortcuts = {a: {"p_pos": OTHER_ARTIFACT_RATE, "p_neg": OTHER_ARTIFACT_RATE} for a in ARTIFACTS}
    shortcuts[artifact] = {"p_pos": strength, "p_neg": NEGATIVE_RATE}
    which = (("artifact", artifact),)
    # the marker (a corner plate) and the border (a frame) lie outside the lungs: where the maps point there,
    # and what the model makes of another patient's surroundings (the drain runs into the lungs: neither).
    # Occlusion blurs the map's top 2% of pixels: that erases a corner plate, but a frame round the whole
    # image (about 15% of it) mostly survives, so the border is not the occlusion check's to catch.
    outside = {"chest_drain": (),
               "marker": (Intended("outside_anatomy_attribution"), Intended("offanatomy_occlusion"),
                          Intended("context_swap")),
               "border": (Intended("outside_anatomy_attribution"), Intended("context_swap"))}[artifact]
    return Defect(
        name=f"shortcut_{artifact}_{round(strength * 100)}", kind="trained",
        description=f"trained where the {artifact.replace('_', ' ')} is on {strength:.0%} of positives and "
                    f"{NEGATIVE_RATE:.0%} of negatives",
        intended=(Intended("artifact_removal", params=which), Intended("artifact_effect", params=which),
                  Intended("artifact_addition", params=which),
                  Intended("artifact_attribution", params=which), Intended("decorrelated_auroc_drop"), *outside),
        dataset_options={"shortcuts": shortcuts})


for _artifact in ARTIFACTS:
    for _strength in STRENGTHS:
        register_defect(_shortcut(_artifact, _strength))

register_defect(Defect(
    "burned_token", "trained",
    "a bright text-like token outside the lungs on 90% of positives and 10% of negatives, with no mask: "
    "a shortcut nobody annotated (dataset wrapper burned-token)",
    (Intended("outside_anatomy_attribution"), Intended("spray_clusters"), Intended("offanatomy_occlusion"),
     Intended("context_swap")),
    dataset="burned-token", dataset_options={"p_pos": 0.9, "p_neg": 0.1}))
register_defect(Defect("shuffled_labels", "trained", "trained on permuted labels (it can only memorise)",
                       _PERFORMANCE, dataset="shuffled-labels", dataset_options={"label_seed": 0}))
register_defect(Defect("undertrained", "trained", "three optimizer steps on 96 images (recipe undertrained)",
                       _PERFORMANCE, recipe="undertrained"))
register_defect(Defect("weights_randomised", "weights", "every weight re-initialised (an untrained network)",
                       _PERFORMANCE))
register_defect(Defect("checkpoint_pair_two_seeds", "twins",
                       "the final models of two seeds presented as the last and the previous epoch",
                       (Intended("checkpoint_consistency"),)))
register_defect(Defect("edge_explainer", "explainer", "Sobel edges of the image in place of the explainer "
                       "(model-independent)", _RANDOMISATION, replaces=_BOTH, stand_in=model_independent("edge")))
register_defect(Defect("constant_explainer", "explainer", "a constant map in place of the explainer "
                       "(model-independent)", _RANDOMISATION, replaces=_BOTH, stand_in=model_independent("constant")))
register_defect(Defect("guided_backprop", "explainer", "Guided Backprop in place of the gradient: it fails "
                       "parameter randomisation (Adebayo et al. 2018)", (Intended("model_randomisation"),),
                       replaces=("gradient",), stand_in=substitute("guided_backprop")))
register_defect(Defect("jumpy_explainer", "explainer", "the map jumps (shifts by up to a quarter of the image) "
                       "when any pixel changes", (Intended(category="stability"),), replaces=_BOTH, stand_in=jumpy))
register_defect(Defect("shifted_maps", "explainer", "the map shifted by half the image: off the lesion",
                       _LOCALISATION, replaces=_BOTH, stand_in=shifted))
# A blur keeps the map's ranking near its peak, so argmax and rank metrics (pointing game, relevance
# rank, map AUC, DiffGradCAM) cannot see it; only what measures the share of the heat on the lesion can.
_SPREAD = tuple(Intended(check=c) for c in ("energy_pointing_game", "iou", "relevance_mass", "lesion_focus"))
register_defect(Defect("blurred_maps", "explainer", "the map blurred over the whole lung (sigma 1/6 of the side)",
                       _SPREAD, replaces=_BOTH, stand_in=blurred))


def randomised_copy(model: nn.Module, architecture: str, seed: int) -> nn.Module:
    """A freshly initialised network of ``model``'s architecture and shape (its weights randomised)."""
    from harness.models import create_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = create_model(architecture, img_size=model.img_size, num_classes=model.num_classes,
                             preprocess=model.preprocess.kind, multilabel=model.multilabel,
                             finding_names=model.finding_names)
    return fresh.to(next(model.parameters()).device).eval()


__all__ = ["DEFECTS", "Defect", "Intended", "StandIn", "get_defect", "list_defects", "randomised_copy",
           "ARTIFACTS", "STRENGTHS"]
