"""Checkpoint consistency: do two checkpoints of one run explain the same images the same way?

Seed 001 confesses it never checked "consistency across checkpoints": a model whose maps swing
between the last two epochs while its AUROC stays flat has not settled on its evidence.
"""

from __future__ import annotations

from harness.checks.context import ModelContext
from harness.checks.localisation import positives
from harness.checks.registry import CheckSkipped, Measurement, register_check
from harness.metrics import bootstrap_ci, spearman


@register_check("checkpoint_consistency", category="checkpoint_consistency")
def check_checkpoint_consistency(ctx: ModelContext, explainer: str, *, split: str = "test",
                                 n_boot: int = 1000, seed: int = 0) -> Measurement:
    """Spearman similarity of maps from the last vs the previous epoch checkpoint."""
    previous = ctx.previous_model
    if previous is None:
        raise CheckSkipped(f"model {ctx.name!r} has no previous-epoch checkpoint to compare with")
    idx = positives(ctx, split)
    last_maps = ctx.maps(explainer, split)[idx]
    prev_maps = ctx.maps(explainer, split, model=previous)[idx]
    sims = spearman(last_maps, prev_maps)
    boot = bootstrap_ci(sims, n_boot=n_boot, seed=seed)
    agree = ((ctx.probs(split) >= 0.5) == (ctx.probs(split, model=previous) >= 0.5)).float().mean()
    details = {"split": split, "prediction_agreement": float(agree),
               "epochs": [ctx.manifest.get("epoch"), int(ctx.manifest.get("epoch", 1)) - 1]}
    return Measurement("spearman_between_checkpoints", boot.estimate, boot.low, boot.high, boot.n, details)
