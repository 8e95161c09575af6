"""Checkpoint consistency: do two checkpoints of one run, or two runs with different seeds, explain alike?

Seed 001 confesses it never checked "consistency across checkpoints": a model whose maps swing
between the last two epochs while its AUROC stays flat has not settled on its evidence. Across
seeds, the same recipe should find the same evidence; if two seeds agree on the labels but not on
the maps, the maps describe the seed, not the task.
"""

from __future__ import annotations

from harness.explain.context import ModelContext
from harness.checks.localisation import patient_ci, positives
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.metrics import spearman


@register_check("checkpoint_consistency", category="checkpoint_consistency", reference="previous epoch")
def check_checkpoint_consistency(ctx: ModelContext, explainer: str, *, split: str = "test",
                                 n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Spearman similarity of maps from the last vs the previous epoch checkpoint."""
    previous = ctx.previous_model
    if previous is None:
        raise CheckSkipped(f"model {ctx.name!r} has no previous-epoch checkpoint to compare with")
    details = {"epochs": [ctx.manifest.get("epoch"), int(ctx.manifest.get("epoch", 1)) - 1]}
    return _compare(ctx, explainer, previous, "spearman_between_checkpoints", split, n_boot, seed, details)


@register_check("seed_consistency", category="checkpoint_consistency", reference="another seed")
def check_seed_consistency(ctx: ModelContext, explainer: str, *, other_seed: int | None = None,
                           split: str = "test", n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Spearman similarity of maps from this run vs the same recipe trained with another seed (trained on first use)."""
    own = ctx.training_seed
    other_seed = own + 1 if other_seed is None else other_seed
    if other_seed == own:
        raise ValueError(f"other_seed must differ from the model's own seed {own}")
    other = ctx.twins.other_seed(other_seed)
    if other is None:
        raise CheckSkipped(f"model {ctx.name!r} is not a zoo model: no other seed can be trained")
    return _compare(ctx, explainer, other, "spearman_between_seeds", split, n_boot, seed,
                    {"seeds": [own, other_seed]})


def _compare(ctx: ModelContext, explainer: str, other, metric: str, split: str, n_boot: int, seed: int,
             details: dict) -> Measurement:
    idx = positives(ctx, split)
    sims = spearman(ctx.maps(explainer, split)[idx], ctx.maps(explainer, split, model=other)[idx])
    boot = patient_ci(ctx, split, idx, sims, n_boot, seed)
    agree = ((ctx.scores(split) >= 0.5) == (ctx.scores(split, model=other) >= 0.5)).float().mean()
    return Measurement.of(metric, boot, {"split": split, "prediction_agreement": float(agree), **details})
