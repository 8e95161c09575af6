"""Randomisation sanity metrics, batched: model-parameter randomisation (MPRT) and the random-logit test.

Adebayo et al. 2018, "Sanity Checks for Saliency Maps": re-initialise the model's layers (cascading
top-down, or one at a time independently) and measure how similar the explanation stays; Sixt et al.
2020, "When explanations lie": the map of a random other class should differ from the target's.
Binder et al. 2023: model-independent maps also "pass"; report these beside controls, never rank by them.

``explain_fn(model, images, targets) -> maps [B,...]`` is any batched explainer; randomisation works
on a deep copy, so the model under test is never touched, and leaves the global RNG alone.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from harness.metrics.registry import register_metric
from harness.metrics.similarity import spearman

ExplainFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Unit:
    """One step of a randomisation: a name and the parameter names it re-initialises."""

    name: str
    params: tuple[str, ...]


def randomisation_units(model: nn.Module, *, granularity: Literal["block", "module"] = "block",
                        depth: int = 3) -> list[Unit]:
    """The model's randomisation steps in forward order.

    ``block``: parameters grouped by the first ``depth`` components of their owner's path (a stage or
    block at a time). ``module``: every module with ``reset_parameters`` (Quantus 0.6.0's unit, in
    ``named_modules`` order). Both include model-level tensors that no such module owns, such as a
    ViT's ``cls_token`` and ``pos_embed`` (Quantus never randomises those), placed by where they are
    registered.
    """
    if granularity == "block":
        groups: OrderedDict[str, list[str]] = OrderedDict()
        for name, _ in model.named_parameters():
            groups.setdefault(".".join(name.split(".")[:-1][:depth]) or name, []).append(name)
        return [Unit(k, tuple(v)) for k, v in groups.items()]
    if granularity != "module":
        raise ValueError(f"granularity must be 'block' or 'module', got {granularity!r}")
    return _module_units(model)


def _module_units(model: nn.Module) -> list[Unit]:
    order = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    units, owned = [], set()
    for path, module in model.named_modules():
        if hasattr(module, "reset_parameters"):
            names = tuple(f"{path}.{n}" if path else n for n, _ in module.named_parameters())
            units.append(Unit(path or "(model)", names))
            owned.update(names)
    leftovers: OrderedDict[str, list[str]] = OrderedDict()
    for name in order:
        if name not in owned:
            leftovers.setdefault(name.rpartition(".")[0] or "(model)", []).append(name)
    extra = [Unit(f"{k} (model-level)", tuple(v)) for k, v in leftovers.items()]
    first = lambda u: min((order[p] for p in u.params), default=-1)  # noqa: E731
    return _merge_by_position(units, extra, first)


def _merge_by_position(units: list[Unit], extra: list[Unit], first: Callable[[Unit], int]) -> list[Unit]:
    """Insert model-level units before the first module unit registered after them (stable order)."""
    merged = list(units)
    for unit in extra:
        at = next((i for i, u in enumerate(merged) if first(u) > first(unit)), len(merged))
        merged.insert(at, unit)
    return merged


@torch.no_grad()
def randomise_unit(model: nn.Module, params: tuple[str, ...] | list[str], seed: int) -> None:
    """Re-initialise the named parameters in place, deterministically (global RNG untouched).

    Modules with ``reset_parameters`` that own every one of their parameters here use their own
    initialisation (as Quantus does); any other tensor (position embeddings, class tokens, layer
    scales) is drawn from N(0, std of the original, or 0.02 when that is zero).
    """
    named = dict(model.named_parameters())
    device = next(iter(named.values())).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        done: set[str] = set()
        for name in params:
            if name in done:
                continue
            owner_path = name.rpartition(".")[0]
            owner = model.get_submodule(owner_path) if owner_path else model
            own = {f"{owner_path}.{n}" if owner_path else n for n, _ in owner.named_parameters()}
            if hasattr(owner, "reset_parameters") and own <= set(params):
                owner.reset_parameters()
                done |= own
                continue
            p = named[name]
            std = float(p.float().std()) if p.numel() > 1 else 0.0
            p.normal_(0.0, std if std > 0 else 0.02)
            done.add(name)


def unchanged_is_identical(similarity: Similarity) -> Similarity:
    """``similarity`` where a map that did not change scores 1.0, whatever the metric's edge cases.

    Rank correlation and SSIM are undefined (NaN) for a constant map, so a model-independent
    constant explainer would never "fail" a randomisation test: it errors instead. A map equal to its
    reference, or constant both before and after (no preferred location either way), did not move
    at all: it is as similar as a map can be.
    """

    def compare(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        sims = similarity(a, b).double()
        x, y = a.detach().flatten(1), b.detach().flatten(1).to(a.device)
        constant = lambda m: m.amax(1) == m.amin(1)  # noqa: E731
        unchanged = (x == y).all(1) | (constant(x) & constant(y))
        return torch.where(unchanged.to(sims.device), torch.ones_like(sims), sims)

    return compare


@dataclass(frozen=True)
class MPRTResult:
    """Similarity of each step's maps to the original maps: ``similarity[L,B]`` for ``layers[L]``."""

    layers: list[str]
    similarity: torch.Tensor

    @property
    def last(self) -> torch.Tensor:
        """Per-image similarity after the last step ``[B]`` (fully randomised when cascading)."""
        return self.similarity[-1]

    def curve(self) -> list[tuple[str, float]]:
        return [(name, float(s.nanmean())) for name, s in zip(self.layers, self.similarity)]


def model_parameter_randomisation(model: nn.Module, explain_fn: ExplainFn, images: torch.Tensor,
                                  targets: torch.Tensor, *, order: Literal["cascading", "independent"] = "cascading",
                                  granularity: Literal["block", "module"] = "block", similarity: Similarity = spearman,
                                  seed: int = 0, reseed: Literal["per_step", "constant"] = "per_step",
                                  reference: torch.Tensor | None = None) -> MPRTResult:
    """Model-parameter randomisation test (Adebayo et al. 2018), cascading top-down or independent.

    Each step re-initialises one unit (see ``randomisation_units``) of a copy of ``model``: cumulatively
    from the output layer backwards (``cascading``), or one unit at a time on a fresh copy of the
    original (``independent``, listed in forward order). Step ``k`` is seeded with ``seed + k``
    (``reseed="per_step"``) or ``seed`` every time (``"constant"``, Quantus 0.6.0's behaviour with
    ``seed = its seed + 1``). ``reference`` are the original maps when already computed.

    Returns:
        ``MPRTResult`` with float64 similarities ``[L,B]``: 1.0 where a map did not change (see
        :func:`unchanged_is_identical`), NaN where the metric is undefined for one map only.
        Lower is better: the explanation should depend on the parameters.
    """
    if order not in ("cascading", "independent"):
        raise ValueError(f"order must be 'cascading' or 'independent', got {order!r}")
    reference = explain_fn(model, images, targets) if reference is None else reference
    similarity = unchanged_is_identical(similarity)
    units = randomisation_units(model, granularity=granularity)
    units = units[::-1] if order == "cascading" else units
    original = copy.deepcopy(model.state_dict())
    randomised = copy.deepcopy(model)
    rows = []
    for step, unit in enumerate(units):
        if order == "independent" and step:
            randomised.load_state_dict(original)
        randomise_unit(randomised, unit.params, seed + step if reseed == "per_step" else seed)
        rows.append(similarity(reference, explain_fn(randomised, images, targets)).double())
    sims = torch.stack(rows) if rows else torch.empty(0, images.shape[0], dtype=torch.float64)
    return MPRTResult([u.name for u in units], sims)


@register_metric("mprt", category="randomisation", higher_is_better=False)
def mprt(model: nn.Module, explain_fn: ExplainFn, images: torch.Tensor, targets: torch.Tensor, *,
         order: Literal["cascading", "independent"] = "cascading", seed: int = 0) -> torch.Tensor:
    """Model-parameter randomisation (Adebayo et al. 2018): per-image Spearman after full cascading randomisation.

    For ``independent`` order, the per-image mean over steps (Quantus' ``return_average_correlation``).
    """
    result = model_parameter_randomisation(model, explain_fn, images, targets, order=order, seed=seed)
    return result.last if order == "cascading" else result.similarity.nanmean(0)


def off_targets(targets: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """One class per sample drawn uniformly among the classes other than its target."""
    if num_classes < 2:
        raise ValueError("the random-logit test needs at least 2 classes")
    draw = torch.randint(0, num_classes - 1, targets.shape, generator=generator).to(targets.device)
    return draw + (draw >= targets).long()


@register_metric("random_logit", category="randomisation", higher_is_better=False)
def random_logit(model: nn.Module, explain_fn: ExplainFn, images: torch.Tensor, targets: torch.Tensor, *,
                 num_classes: int, other: torch.Tensor | None = None, generator: torch.Generator | None = None,
                 similarity: Similarity = spearman, reference: torch.Tensor | None = None) -> torch.Tensor:
    """Random-logit test (Sixt et al. 2020): similarity of the target's map to a random other class's map.

    ``other`` gives the other classes explicitly (else drawn with ``generator``, seed 0 by default).
    Lower is better: a map that does not change with the explained class does not explain the class
    (an unchanged map scores 1.0, see :func:`unchanged_is_identical`). Returns float64 ``[B]``.
    """
    if other is None:
        other = off_targets(targets, num_classes, generator or torch.Generator().manual_seed(0))
    if bool((other == targets).any()):
        raise ValueError("each random-logit class must differ from the sample's target")
    reference = explain_fn(model, images, targets) if reference is None else reference
    return unchanged_is_identical(similarity)(reference, explain_fn(model, images, other))
