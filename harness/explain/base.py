"""The explainer contract: one method, raw signed maps, one target per sample; a [0,1] display view."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import nn

from harness.registry import Registry

View = Literal["relu", "abs", "minmax"]
Category = Literal["cam", "gradient", "lrp", "control"]

#: Explainer families, as ``xai-harness list explainers`` shows them.
CATEGORIES: tuple[str, ...] = ("cam", "gradient", "lrp", "control")

EXPLAINERS: Registry[type["Explainer"]] = Registry("explainer")


class ExplainerUnsupported(Exception):
    """This explainer cannot explain this model faithfully; the message states why.

    Raised instead of returning a map that would silently be wrong (LRP on a timm ResNet, guided
    backprop on a network without ReLUs). The checks stage turns it into verdict ``skip`` with the
    message as the reason.
    """


class Explainer:
    """Base class of every explainer.

    ``explain(model, images, targets)`` takes float images ``[B,1,H,W]`` in [0,1] on the model's
    device and int64 ``targets`` ``[B]`` (exactly one class index per sample; raise otherwise), and
    returns a raw, signed ``Tensor[B,1,H,W]`` at the input resolution on the model's device.
    The model is put in eval mode; hooks are removed on exit, even on error.
    Subclasses set ``name``, ``description``, ``category`` (one of :data:`CATEGORIES`) and
    ``is_control`` (model-independent baselines; exactly the ``"control"`` category). An explainer
    that cannot explain a given model faithfully raises :class:`ExplainerUnsupported` with the reason.

    ``unit_view(maps)`` turns raw maps into the [0,1] per-image view that display and the
    [0,1]-based metrics (DiffGradCAM, EHR AUC, IoU) read. The policy is the class attribute ``view``:

    * ``"relu"`` (CAMs): positive evidence only, then per-image min-max.
    * ``"abs"`` (gradients): magnitude, then per-image min-max.
    * ``"minmax"`` (controls): per-image min-max of the signed map.

    A constant map becomes all zeros (no preferred location), never NaN.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    category: ClassVar[Category | str] = ""
    is_control: ClassVar[bool] = False
    view: ClassVar[View] = "relu"

    def explain(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        check_targets(images, targets)
        return self.explain(model, images, targets)

    def unit_view(self, maps: torch.Tensor) -> torch.Tensor:
        """The [0,1] display view of raw ``maps`` ``[B,...]`` under this explainer's ``view`` policy."""
        return unit_view(maps, self.view)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def unit_view(maps: torch.Tensor, view: View) -> torch.Tensor:
    """Per-image [0,1] view of raw maps: ``relu``, ``abs`` or ``minmax`` before the min-max."""
    if view == "relu":
        return normalise_maps(maps, relu=True)
    if view == "abs":
        return normalise_maps(maps.abs(), relu=False)
    if view == "minmax":
        return normalise_maps(maps, relu=False)
    raise ValueError(f"unknown view {view!r}; expected 'relu', 'abs' or 'minmax'")


def check_targets(images: torch.Tensor, targets: torch.Tensor) -> None:
    """Exactly one target per sample (pytorch-grad-cam silently explains image 0 otherwise)."""
    if images.ndim != 4:
        raise ValueError(f"images must be [B,C,H,W], got shape {tuple(images.shape)}")
    if targets.ndim != 1 or targets.shape[0] != images.shape[0]:
        raise ValueError(
            f"need exactly one target per sample: {images.shape[0]} images, targets of shape "
            f"{tuple(targets.shape)}"
        )
    if targets.is_floating_point() or targets.is_complex():
        raise TypeError(f"targets must be integer class indices, got dtype {targets.dtype}")


def normalise_maps(maps: torch.Tensor, *, relu: bool = True) -> torch.Tensor:
    """Per-image min-max view in [0,1] (ReLU first by default, as Grad-CAM displays do).

    A constant map becomes all zeros (no preferred location), never NaN.
    """
    x = maps.clamp_min(0) if relu else maps
    flat = x.flatten(1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    span = hi - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-12), torch.zeros_like(flat))
    return out.view_as(maps)


def register_explainer(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator registering an explainer under its ``name`` (a duplicate name raises).

    The registry metadata holds ``description``, ``category`` and ``is_control``.
    """
    if not cls.name or not cls.description:
        raise ValueError(f"{cls.__name__} must set a non-empty `name` and `description`")
    if cls.category not in CATEGORIES:
        raise ValueError(f"{cls.__name__}.category must be one of {CATEGORIES}, got {cls.category!r}")
    if cls.is_control != (cls.category == "control"):
        raise ValueError(f"{cls.__name__}: is_control={cls.is_control} contradicts category {cls.category!r}")
    return EXPLAINERS.register(
        cls.name, description=cls.description, category=cls.category, is_control=cls.is_control
    )(cls)


def target_scores(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The logit of each sample's own target class, ``[B]`` (one target per sample, gathered)."""
    if logits.ndim != 2:
        raise ValueError(f"model must return logits [B,num_classes], got shape {tuple(logits.shape)}")
    t = targets.to(device=logits.device, dtype=torch.long)
    if t.shape != logits.shape[:1]:
        raise ValueError(f"need exactly one target per sample: logits {tuple(logits.shape)}, targets {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= logits.shape[1]):
        raise ValueError(f"targets must lie in [0, {logits.shape[1]}), got {t.tolist()}")
    return logits.gather(1, t[:, None]).squeeze(1)


def model_attr(model: nn.Module, attr: str) -> object:
    """A ClassifierNet attribute (``target_layer``, ``reshape_transform``) with a clear error."""
    if not hasattr(model, attr):
        raise AttributeError(
            f"{type(model).__name__} has no attribute {attr!r}: CAM explainers need a ClassifierNet "
            "with `target_layer` and `reshape_transform`"
        )
    return getattr(model, attr)

