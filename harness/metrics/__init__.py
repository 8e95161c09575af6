"""Metrics stage: pure batched torch functions (performance, localisation, similarity, attribution, statistics).

Each metric reduces the last axis (performance) or each image (maps) without per-sample Python
loops, returns float64 tensors, and documents its edge cases (empty mask -> NaN, constant maps,
ties, NaN inputs). Tests pin each one to scikit-learn, scipy, Quantus 0.6.0 or a hand-computed value.
Importing this package imports every metric module, so every ``register_metric`` has run
(``list_metrics()``, ``xai-harness list metrics``).
"""

from __future__ import annotations

from harness.metrics.attribution import (
    border_fraction,
    border_frame,
    border_share,
    extrathoracic_share,
    region_share,
    region_share_ratio,
)
from harness.metrics.class_maps import ClassMaps, class_mean_maps
from harness.metrics.comparison import (
    AnovaResult,
    CorrelationResult,
    TukeyPair,
    anova_tukey,
    spearman_correlation,
)
from harness.metrics.localisation import (
    diffgradcam,
    ehr_auc,
    ehr_curve,
    energy_pointing_game,
    iou,
    localisation_auc,
    minmax_maps,
    miou,
    otsu_levels,
    pointing_game,
    relevance_mass,
    relevance_rank,
    segment_maps,
    segmentation_iou,
    threshold_maps,
    top_k_intersection,
)
from harness.metrics.performance import (
    accuracy,
    auprc,
    auroc,
    confusion,
    expected_calibration_error,
    f1,
    fnr,
    fpr,
    macro,
    macro_auroc,
    per_class,
    precision,
    sensitivity,
    specificity,
)
from harness.metrics.registry import METRIC_CATEGORIES, MetricSpec, get_metric, list_metrics, register_metric
from harness.metrics.similarity import average_ranks, pearson, spearman
from harness.metrics.stats import BootstrapResult, bootstrap_ci, bootstrap_statistic, paired_bootstrap
from harness.metrics.subgroups import SubgroupResult, age_bands, subgroup_metric

# Modules whose public names their owners export; imported here so that their metrics are registered.
from harness.metrics import complexity as _complexity  # noqa: E402,F401  (sparseness, complexity)
from harness.metrics import faithfulness as _faithfulness  # noqa: E402,F401  (deletion_auc, insertion_auc)
from harness.metrics import randomisation as _randomisation  # noqa: E402,F401  (mprt, random_logit)
from harness.metrics import robustness as _robustness  # noqa: E402,F401  (max_sensitivity, avg_sensitivity)
from harness.metrics import structural as _structural  # noqa: E402,F401  (ssim, hog_similarity)

__all__ = [
    "METRIC_CATEGORIES",
    "AnovaResult",
    "BootstrapResult",
    "ClassMaps",
    "CorrelationResult",
    "MetricSpec",
    "SubgroupResult",
    "TukeyPair",
    "accuracy",
    "age_bands",
    "anova_tukey",
    "auprc",
    "auroc",
    "average_ranks",
    "bootstrap_ci",
    "bootstrap_statistic",
    "border_fraction",
    "border_frame",
    "border_share",
    "class_mean_maps",
    "confusion",
    "diffgradcam",
    "ehr_auc",
    "ehr_curve",
    "energy_pointing_game",
    "expected_calibration_error",
    "extrathoracic_share",
    "f1",
    "fnr",
    "fpr",
    "get_metric",
    "iou",
    "list_metrics",
    "localisation_auc",
    "macro",
    "macro_auroc",
    "minmax_maps",
    "miou",
    "otsu_levels",
    "paired_bootstrap",
    "pearson",
    "per_class",
    "pointing_game",
    "precision",
    "region_share",
    "region_share_ratio",
    "register_metric",
    "relevance_mass",
    "relevance_rank",
    "segment_maps",
    "segmentation_iou",
    "sensitivity",
    "spearman",
    "spearman_correlation",
    "specificity",
    "subgroup_metric",
    "threshold_maps",
    "top_k_intersection",
]
