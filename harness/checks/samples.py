"""Per-image samples of a measurement, kept in results.json so a later run can be compared image by image.

A check whose statistic is a mean of per-image values records those values; a check whose statistic
is computed over the whole set (AUROC, sensitivity, ECE) records the per-image scores and labels, so
a paired bootstrap can recompute it (``harness.report.baseline``). Either way the images are named
by their index in the split, their patient id and a key of the dataset that rendered them, so two
runs pair only the same images. Values are rounded to 5 decimals to keep results.json small.

The samples travel on the bootstrap result (:class:`SampledBootstrap`) and
:meth:`harness.checks.registry.Measurement.of` writes them into ``details["samples"]``, so every
check that bootstraps through ``patient_ci`` records them without code of its own.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from harness.explain.context import ModelContext
from harness.metrics.stats import BootstrapResult

DECIMALS = 5


@dataclass(frozen=True)
class SampledBootstrap(BootstrapResult):
    """A :class:`BootstrapResult` that also carries the per-image samples it was computed from."""

    samples: dict[str, Any] = field(default_factory=dict)


def dataset_key(ctx: ModelContext, split: str) -> str:
    """Which images a split holds: dataset name and split, a hash of its generating configuration, the finding.

    Two runs pair images only when their keys are equal (same data, resolution, options and finding).
    """
    data = ctx.dataset(split)
    config = json.dumps(getattr(data, "config", {}), sort_keys=True, default=str)
    digest = hashlib.sha256(config.encode()).hexdigest()[:12]
    finding = f"[{data.finding_names[ctx.target_class]}]" if ctx.multilabel else ""
    return f"{data.name or split}{finding}#{digest}"


def mean_samples(ctx: ModelContext, split: str, idx: torch.Tensor, values: torch.Tensor) -> dict[str, Any]:
    """Samples of a per-image mean: the values of the images ``idx`` of ``split``."""
    return {"kind": "mean", **_images(ctx, split, idx), "values": _rounded(values)}


def statistic_samples(ctx: ModelContext, split: str, statistic: str, options: dict[str, Any],
                      scores: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Samples of a set-level statistic (a registered metric ``statistic(scores, labels, **options)``)."""
    idx = torch.arange(len(scores))
    return {"kind": "statistic", "statistic": statistic, "options": dict(options), **_images(ctx, split, idx),
            "scores": _rounded(scores), "labels": _rounded(labels)}


def with_samples(boot: BootstrapResult, samples: dict[str, Any]) -> SampledBootstrap:
    """``boot`` carrying ``samples``."""
    return SampledBootstrap(**boot.to_dict(), samples=samples)


def _images(ctx: ModelContext, split: str, idx: torch.Tensor) -> dict[str, Any]:
    idx = torch.as_tensor(idx).flatten().cpu()
    idx = torch.nonzero(idx).flatten() if idx.dtype == torch.bool else idx.long()  # a mask or indices
    data = ctx.dataset(split)
    out = {"split": split, "dataset": dataset_key(ctx, split), "image_index": idx.tolist(),
           "patient": ctx.patients(split)[idx].tolist()}
    if getattr(data, "image_ids", None) is not None:
        out["image_id"] = [data.image_ids[i] for i in out["image_index"]]
    return out


def _rounded(values: torch.Tensor) -> list[float | None]:
    """Values as a list rounded to :data:`DECIMALS`; NaN becomes None (JSON has no NaN)."""
    flat = torch.as_tensor(values).detach().cpu().double().flatten().tolist()
    return [None if v != v else round(v, DECIMALS) for v in flat]
