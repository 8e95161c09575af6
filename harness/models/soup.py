"""The final model of an "ensemble of the K best checkpoints" recipe, as one network (a weight soup).

CheXtransfer (seed 004) averages the predictions of its 10 best checkpoints. Explainers need one
model with one target layer, so here the checkpoints' *weights* are averaged instead, greedily
(Wortsman et al. 2022, "Model soups"): candidates are tried best first and one joins only if the
validation AUROC of the average does not drop, so the soup is never worse on validation than the
best single checkpoint. Checkpoints of one fine-tuning run lie in one basin, where weight averaging
works (as in SWA). BatchNorm statistics of an average are not the average of statistics: they are
re-estimated on training images after every averaging step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from harness.models.architectures import ClassifierNet


@dataclass(frozen=True)
class Candidate:
    """One evaluated checkpoint: its step, validation score and weights (CPU tensors)."""

    step: int
    score: float
    state: dict[str, torch.Tensor]


@dataclass(frozen=True)
class SoupResult:
    """The soup's weights, which candidates (steps) it averages and its validation score."""

    state: dict[str, torch.Tensor]
    members: tuple[int, ...]
    score: float
    tried: int


def average_states(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Element-wise mean of floating tensors; integer buffers (``num_batches_tracked``) from the first."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([s[key].float() for s in states]).mean(0).to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def greedy_soup(model: ClassifierNet, candidates: list[Candidate], score: Callable[[nn.Module], float],
                recalibrate: Callable[[nn.Module], None]) -> SoupResult:
    """Greedy soup of ``candidates`` loaded into ``model`` (left holding the soup's weights).

    Args:
        score: validation score of the model as loaded (higher is better; NaN counts as -inf).
        recalibrate: re-estimates normalisation statistics of the model as loaded (may do nothing).
    """
    if not candidates:
        raise ValueError("greedy_soup needs at least one candidate")
    ranked = sorted(candidates, key=lambda c: (-_finite(c.score), c.step))
    members, best = [ranked[0]], _finite(ranked[0].score)
    for candidate in ranked[1:]:
        _load(model, average_states([m.state for m in members + [candidate]]), recalibrate)
        trial = _finite(score(model))
        if trial >= best:
            members.append(candidate)
            best = trial
    state = average_states([m.state for m in members])
    _load(model, state, recalibrate if len(members) > 1 else (lambda m: None))
    final = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    return SoupResult(state=final, members=tuple(m.step for m in members), score=best, tried=len(ranked))


def _load(model: nn.Module, state: dict[str, torch.Tensor], recalibrate: Callable[[nn.Module], None]) -> None:
    model.load_state_dict(state)
    recalibrate(model)


def _finite(value: float) -> float:
    return -math.inf if value is None or math.isnan(value) else float(value)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: list[torch.Tensor], *, only_trainable: bool = True) -> None:
    """Re-estimate BatchNorm running statistics as a cumulative average over ``batches`` (float images).

    Only BatchNorms with trainable parameters are touched (frozen ones keep their statistics) when
    ``only_trainable``. Leaves the model in eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
             and (not only_trainable or any(p.requires_grad for p in m.parameters(recurse=False)))]
    if not norms or not batches:
        model.eval()
        return
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
        m.train()
    try:
        for images in batches:
            model(images)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()


__all__ = ["Candidate", "SoupResult", "average_states", "greedy_soup", "recalibrate_batchnorm"]
