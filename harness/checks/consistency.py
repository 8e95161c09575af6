"""Checkpoint consistency: do two checkpoints of one run, or two runs with different seeds, explain alike?

Seed 001 confesses it never checked "consistency across checkpoints": a model whose maps swing
between the last two epochs while its AUROC stays flat has not settled on its evidence. Across
seeds, the same recipe should find the same evidence; if two seeds agree on the labels but not on
the maps, the maps describe the seed, not the task.

Agreement is chance-corrected by default, as Cohen's kappa corrects raw agreement: part of any two
maps' rank correlation is what every map of the architecture shares (the lung field, the image
border), so two unrelated DenseNets still correlate at 0.89 on synth-cxr. The reference is the other
checkpoint's map of *another* image: ``(rho(a_i, b_i) - c_i) / (1 - c_i)``, with ``c_i`` the mean
correlation of ``a_i`` with ``b`` of ``partners`` other images: 1 is the same image-specific map, 0 no
more alike than another image's map.
"""

from __future__ import annotations

import torch

from harness.explain.context import ModelContext
from harness.checks.localisation import patient_ci, positives
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.metrics import spearman


@register_check("checkpoint_consistency", category="checkpoint_consistency",
                reference="previous epoch; chance level: its map of another image")
def check_checkpoint_consistency(ctx: ModelContext, explainer: str, *, split: str = "test",
                                 chance_corrected: bool = True, partners: int = 8,
                                 n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Spearman similarity of maps from the last vs the previous epoch checkpoint (chance-corrected by default)."""
    previous = ctx.previous_model
    if previous is None:
        raise CheckSkipped(f"model {ctx.name!r} has no previous-epoch checkpoint to compare with (an external "
                           "checkpoint: name it with --previous PATH)")
    details = {"epochs": [ctx.manifest.get("epoch"), int(ctx.manifest.get("epoch", 1)) - 1]}
    return _compare(ctx, explainer, previous, "spearman_between_checkpoints", split, n_boot, seed, details,
                    chance_corrected, partners)


@register_check("seed_consistency", category="checkpoint_consistency",
                reference="another seed; chance level: its map of another image")
def check_seed_consistency(ctx: ModelContext, explainer: str, *, other_seed: int | None = None,
                           split: str = "test", chance_corrected: bool = True, partners: int = 8,
                           n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Spearman similarity of maps from this run vs the same recipe trained with another seed (trained on first
    use), chance-corrected by default."""
    own = ctx.training_seed
    other_seed = own + 1 if other_seed is None else other_seed
    if other_seed == own:
        raise ValueError(f"other_seed must differ from the model's own seed {own}")
    other = ctx.twins.other_seed(other_seed)
    if other is None:
        raise CheckSkipped(f"model {ctx.name!r} is not a zoo model: no other seed can be trained (name a twin of "
                           "the same recipe with --seed-twin PATH)")
    return _compare(ctx, explainer, other, "spearman_between_seeds", split, n_boot, seed,
                    {"seeds": [own, other_seed]}, chance_corrected, partners)


def chance_corrected_agreement(a: torch.Tensor, b: torch.Tensor, *, partners: int = 8,
                               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image ``(rho(a_i, b_i) - c_i) / (1 - c_i)`` and the chance level ``c_i`` (float64 ``[B]``).

    ``c_i`` is the mean Spearman correlation of ``a_i`` with ``b_j`` for ``partners`` other images
    ``j`` (distinct cyclic shifts of the batch drawn with ``seed``, so never the image itself). NaN
    where fewer than 2 images, where ``c_i`` is 1, or where Spearman is undefined (a constant map).
    """
    n = a.shape[0]
    raw = spearman(a, b)
    if n < 2:
        return torch.full_like(raw, float("nan")), torch.full_like(raw, float("nan"))
    shifts = (torch.randperm(n - 1, generator=torch.Generator().manual_seed(seed))[:partners] + 1).tolist()
    chance = torch.stack([spearman(a, b.roll(-k, 0)) for k in shifts]).mean(0)
    kappa = (raw - chance) / (1 - chance)
    return torch.where(chance < 1, kappa, torch.full_like(kappa, float("nan"))), chance


def _compare(ctx: ModelContext, explainer: str, other, metric: str, split: str, n_boot: int, seed: int,
             details: dict, chance_corrected: bool = True, partners: int = 8) -> Measurement:
    idx = positives(ctx, split)
    mine, theirs = ctx.maps(explainer, split)[idx], ctx.maps(explainer, split, model=other)[idx]
    raw = spearman(mine, theirs)
    agree = ((ctx.scores(split) >= 0.5) == (ctx.scores(split, model=other) >= 0.5)).float().mean()
    details = {"split": split, "prediction_agreement": float(agree), "chance_corrected": chance_corrected,
               "raw_spearman": float(raw.nanmean()), **details}
    if chance_corrected:
        raw, chance = chance_corrected_agreement(mine, theirs, partners=partners, seed=seed)
        metric, details["chance_level"] = f"chance_corrected_{metric}", float(chance.nanmean())
    return Measurement.of(metric, patient_ci(ctx, split, idx, raw, n_boot, seed), details)
