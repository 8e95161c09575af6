"""Metrics stage: pure batched torch functions (performance, localisation, similarity, attribution, statistics).

Each metric reduces the last axis (performance) or each image (maps) without per-sample Python
loops, returns float64 tensors, and documents its edge cases (empty mask -> NaN, constant maps,
ties, NaN inputs). Tests pin each one to scikit-learn, scipy, Quantus 0.6.0 or a hand-computed value.
"""

from __future__ import annotations

from harness.metrics.attribution import region_share, region_share_ratio
from harness.metrics.localisation import (
    diffgradcam,
    ehr_auc,
    ehr_curve,
    iou,
    otsu_levels,
    pointing_game,
    relevance_mass,
    relevance_rank,
    threshold_maps,
)
from harness.metrics.performance import (
    accuracy,
    auprc,
    auroc,
    confusion,
    expected_calibration_error,
    f1,
    precision,
    sensitivity,
    specificity,
)
from harness.metrics.similarity import average_ranks, pearson, spearman
from harness.metrics.stats import BootstrapResult, bootstrap_ci, bootstrap_statistic

__all__ = [
    "BootstrapResult",
    "accuracy",
    "auprc",
    "auroc",
    "average_ranks",
    "bootstrap_ci",
    "bootstrap_statistic",
    "confusion",
    "diffgradcam",
    "ehr_auc",
    "ehr_curve",
    "expected_calibration_error",
    "f1",
    "iou",
    "otsu_levels",
    "pearson",
    "pointing_game",
    "precision",
    "region_share",
    "region_share_ratio",
    "relevance_mass",
    "relevance_rank",
    "sensitivity",
    "specificity",
    "spearman",
    "threshold_maps",
]
