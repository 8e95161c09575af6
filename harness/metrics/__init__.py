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
    lesion_focus,
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
from harness.metrics.stats import BootstrapResult, bootstrap_ci, bootstrap_statistic, cluster_resamples, paired_bootstrap
from harness.metrics.subgroups import SubgroupResult, age_bands, subgroup_metric

# Importing these modules registers their metrics. ``complexity`` (the function) is not re-exported: it
# would shadow the module ``harness.metrics.complexity``.
from harness.metrics.complexity import sparseness  # noqa: E402
from harness.metrics.faithfulness import (  # noqa: E402
    curve_auc,
    deletion_auc,
    deletion_curve,
    insertion_auc,
    insertion_curve,
)
from harness.metrics.randomisation import model_parameter_randomisation, mprt, random_logit  # noqa: E402
from harness.metrics.robustness import avg_sensitivity, max_sensitivity, sensitivity_samples  # noqa: E402
from harness.metrics.similarity import spearman_abs  # noqa: E402
from harness.metrics.structural import hog_similarity, ssim  # noqa: E402

__all__ = [
    "avg_sensitivity",
    "curve_auc",
    "deletion_auc",
    "deletion_curve",
    "hog_similarity",
    "insertion_auc",
    "insertion_curve",
    "max_sensitivity",
    "model_parameter_randomisation",
    "mprt",
    "random_logit",
    "sensitivity_samples",
    "sparseness",
    "spearman_abs",
    "ssim",
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
    "cluster_resamples",
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
    "lesion_focus",
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
