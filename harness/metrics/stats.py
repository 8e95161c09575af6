"""Seeded percentile bootstrap: CIs of per-image means, of dataset statistics, and of paired differences.

Every function resamples images, or, given ``groups`` (one patient id per image), whole patients:
the cluster bootstrap (Davison & Hinkley 1997, sec. 3.8; Field & Welsh 2007). Images of one patient
are correlated (synth-cxr has 1-4 per patient, the real datasets more), so an image bootstrap
treats them as independent evidence and its interval is too narrow; resampling patients keeps each
patient's images together and its interval does not narrow when a patient's images are repeated.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch

_MAX_CHUNK_ELEMENTS = 1 << 24  # rows of the [n_boot, N] index matrix built at once


@dataclass(frozen=True)
class BootstrapResult:
    """A point estimate with its percentile bootstrap CI.

    Attributes:
        estimate: the statistic on all included samples (NaN when none is left).
        low: lower bound of the ``1 - alpha`` percentile interval (NaN without valid replicates).
        high: upper bound of that interval.
        n: number of samples (rows) included.
        n_excluded: samples excluded because they are NaN (counted, never silently dropped).
        n_boot: bootstrap replicates that gave a finite statistic (the CI is computed from them).
        alpha: the interval is ``[alpha/2, 1 - alpha/2]``.
        n_groups: the number of clusters (patients) among the included samples when the bootstrap
            resampled clusters; equal to ``n`` for an image bootstrap.
    """

    estimate: float
    low: float
    high: float
    n: int
    n_excluded: int = 0
    n_boot: int = 0
    alpha: float = 0.05
    n_groups: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_ci(values: Any, *, groups: Any = None, n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> BootstrapResult:
    """Percentile bootstrap CI of the mean of per-image values (Efron & Tibshirani 1993, ch. 13).

    NaN values (empty masks, undefined metrics) are excluded first and counted in ``n_excluded``.
    Resampling is vectorised: an index matrix ``[n_boot, n]`` drawn from a ``torch.Generator``
    seeded with ``seed`` (on the CPU, so the result does not depend on the device), in chunks.
    The interval is ``torch.quantile`` (linear interpolation, numpy's default) of the replicate
    means at ``alpha/2`` and ``1 - alpha/2``, as in CheXlocalize (1000 replicates, 95%).

    With ``groups``, each replicate draws as many patients as there are (with replacement) and
    takes the mean over all their images (a ratio estimator: patient sums over patient counts,
    vectorised the same way). The estimate is the plain mean over images either way.

    Args:
        values: per-image values, any shape (flattened); tensor, array or sequence.
        groups: None (resample images), or one cluster id per value (e.g. the patient id): resample
            clusters with all their values.
        n_boot: number of bootstrap replicates.
        seed: seed of the resampling generator.
        alpha: one minus the confidence level.

    Returns:
        ``BootstrapResult``; all NaN with ``n = 0`` when no finite value is left, and a degenerate
        interval ``[v, v]`` for a single value (or a single cluster).
    """
    _check_options(n_boot, alpha)
    v = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()  # lists stay float64
    keep = ~v.isnan()
    cluster = _cluster_ids(groups, v.numel())
    v = v[keep]
    n, excluded = int(v.numel()), int((~keep).sum())
    if n == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, 0, excluded, 0, alpha, 0)
    if cluster is None:
        means = torch.cat([v[index].mean(1) for index in _index_chunks(n, n_boot, seed)])
        n_groups = n
    else:
        sums, counts = _cluster_sums(v, cluster[keep])
        n_groups = int(counts.numel())
        means = torch.cat([sums[index].sum(1) / counts[index].sum(1) for index in _index_chunks(n_groups, n_boot, seed)])
    low, high = _percentiles(means, alpha)
    return BootstrapResult(float(v.mean()), low, high, n, excluded, int(means.numel()), alpha, n_groups)


def bootstrap_statistic(
    fn: Callable[..., Any],
    *tensors: torch.Tensor,
    groups: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    batched: bool = False,
) -> BootstrapResult:
    """Percentile bootstrap CI of a dataset-level statistic such as AUROC, resampling rows jointly.

    Rows (first dimension, shared by every tensor) with a NaN in any floating tensor are excluded
    and counted in ``n_excluded``. ``fn(*resampled)`` must return a scalar; replicates where it is
    NaN or infinite (for example AUROC of a resample with one class only) are dropped, and
    ``n_boot`` of the result says how many were kept. The index matrix ``[n_boot, n]`` comes from a
    CPU ``torch.Generator`` seeded with ``seed`` (drawn in chunks of rows for large ``n``). With
    ``groups``, a replicate is every row of as many clusters drawn with replacement; replicates then
    differ in length, so ``fn`` is called once per replicate (``batched`` applies only when every
    cluster has one row, where the two bootstraps coincide).

    Args:
        fn: the statistic; called once per replicate with the resampled tensors, or once with
            ``[n_boot, n, ...]`` tensors when ``batched`` (it must then return ``[n_boot]``;
            every metric of ``harness.metrics.performance`` qualifies).
        *tensors: tensors with the same first dimension ``N``.
        groups: None (resample rows), or one cluster id per row (the patient id): resample clusters.
        n_boot: number of bootstrap replicates.
        seed: seed of the resampling generator.
        alpha: one minus the confidence level.
        batched: call ``fn`` once on all replicates (fast) instead of once per replicate.

    Returns:
        ``BootstrapResult`` with ``estimate = fn(*tensors)`` on the included rows.
    """
    _check_options(n_boot, alpha)
    if not tensors:
        raise ValueError("bootstrap_statistic needs at least one tensor")
    data = [torch.as_tensor(t).detach() for t in tensors]
    n_rows = data[0].shape[0]
    if any(t.shape[0] != n_rows for t in data):
        raise ValueError(f"tensors differ in their first dimension: {[tuple(t.shape) for t in data]}")
    keep = torch.ones(n_rows, dtype=torch.bool)
    for t in data:
        if t.is_floating_point():
            keep &= ~t.reshape(n_rows, -1).isnan().any(1).cpu()
    cluster = _cluster_ids(groups, n_rows)
    data = [t[keep.to(t.device)] for t in data]
    n, excluded = int(keep.sum()), int((~keep).sum())
    if n == 0:
        return BootstrapResult(math.nan, math.nan, math.nan, 0, excluded, 0, alpha, 0)
    estimate = float(fn(*data))
    cluster = None if cluster is None else cluster[keep]
    if cluster is None or torch.unique(cluster).numel() == n:
        reps = torch.cat([_replicates(fn, data, index, batched) for index in _index_chunks(n, n_boot, seed)])
        n_groups = n
    else:
        rows, n_groups = _cluster_rows(cluster), int(torch.unique(cluster).numel())
        reps = torch.tensor([float(fn(*(t[index.to(t.device)] for t in data)))
                             for index in _cluster_replicates(rows, n_boot, seed)], dtype=torch.float64)
    reps = reps[torch.isfinite(reps)]
    low, high = _percentiles(reps, alpha)
    return BootstrapResult(estimate, low, high, n, excluded, int(reps.numel()), alpha, n_groups)


def paired_bootstrap(
    a: Any,
    b: Any,
    *shared: torch.Tensor,
    statistic: Callable[..., Any] | None = None,
    groups: Any = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    batched: bool = False,
) -> BootstrapResult:
    """Percentile bootstrap CI of a paired difference ``statistic(a, *shared) - statistic(b, *shared)``.

    Both sides are resampled with the same indices in every replicate (the images are shared), so
    the image-to-image variation common to both cancels: the paired comparison of two models or
    two explainers on one test set (Efron & Tibshirani 1993; e.g. the AUROC of two architectures,
    seed 004, or their DiffGradCAM on the same images, seed 000). A row with a NaN in ``a``,
    ``b`` or a shared tensor is excluded as a pair and counted in ``n_excluded``. ``statistic``
    defaults to the mean of per-image values; ``paired_bootstrap(a, b, labels, statistic=auroc,
    batched=True)`` compares the AUROC of two score vectors. Swapping ``a`` and ``b`` negates the
    estimate and mirrors the interval. A CI excluding 0 is the usual reading of a difference.

    Args:
        a: ``[N, ...]`` values or scores of the first model / method.
        b: ``[N, ...]`` values or scores of the second, row-aligned with ``a``.
        *shared: further ``[N, ...]`` tensors passed to both calls (e.g. labels).
        statistic: ``statistic(x, *shared)`` -> scalar (``[n_boot]`` for ``[n_boot, N]`` inputs
            when ``batched``); None for the mean of per-image values (batched).
        groups: None, or one cluster (patient) id per row: resample patients (see the module).
        n_boot: number of bootstrap replicates (1000, as CheXlocalize and CheXtransfer).
        seed: seed of the resampling generator.
        alpha: one minus the confidence level.
        batched: call ``statistic`` once on all replicates.

    Returns:
        ``BootstrapResult`` of the difference ``a - b``.
    """
    if statistic is None:
        statistic, batched = _mean_last, True

    def difference(x: torch.Tensor, y: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(statistic(x, *rest)) - torch.as_tensor(statistic(y, *rest))

    tensors = [torch.as_tensor(v, dtype=torch.float64) for v in (a, b)]  # lists stay float64
    return bootstrap_statistic(difference, *tensors, *shared, groups=groups, n_boot=n_boot, seed=seed,
                               alpha=alpha, batched=batched)


def _mean_last(values: torch.Tensor) -> torch.Tensor:
    return values.to(torch.float64).mean(-1)


def _replicates(fn: Callable[..., Any], data: list[torch.Tensor], index: torch.Tensor, batched: bool) -> torch.Tensor:
    """The statistic on each row of resampling indices ``[c, n]``, float64 ``[c]`` on the CPU."""
    if batched:
        values = fn(*(t[index.to(t.device)] for t in data))
        return torch.as_tensor(values).detach().to("cpu", torch.float64).flatten()
    values = [float(fn(*(t[row.to(t.device)] for t in data))) for row in index]
    return torch.tensor(values, dtype=torch.float64)


def _check_options(n_boot: int, alpha: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")


def _index_chunks(n: int, n_boot: int, seed: int) -> Iterator[torch.Tensor]:
    """The ``[n_boot, n]`` resampling index matrix, in row chunks of at most ~16M elements (CPU)."""
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // n)
    for start in range(0, n_boot, chunk):
        yield torch.randint(0, n, (min(chunk, n_boot - start), n), generator=generator)


def _cluster_ids(groups: Any, n: int) -> torch.Tensor | None:
    """``groups`` as int64 ``[n]`` cluster ids (None stays None); a length mismatch raises."""
    if groups is None:
        return None
    ids = torch.as_tensor(groups).detach().cpu().flatten()
    if ids.numel() != n:
        raise ValueError(f"groups must give one cluster id per value: {ids.numel()} ids for {n} values")
    if ids.is_floating_point() or ids.is_complex():
        raise TypeError(f"groups must be integer ids (e.g. patient ids), got dtype {ids.dtype}")
    return ids.long()


def _cluster_sums(values: torch.Tensor, cluster: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cluster sums and counts of ``values`` (clusters in ascending id order), float64."""
    _, inverse = torch.unique(cluster, return_inverse=True)
    n_groups = int(inverse.max()) + 1
    sums = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, inverse, values)
    counts = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, inverse, torch.ones_like(values))
    return sums, counts


def _cluster_rows(cluster: torch.Tensor) -> list[torch.Tensor]:
    """The row indices of each cluster, in ascending cluster-id order."""
    order = torch.argsort(cluster, stable=True)
    _, counts = torch.unique(cluster, return_counts=True)
    return list(order.split(counts.tolist()))


def _cluster_replicates(rows: list[torch.Tensor], n_boot: int, seed: int) -> Iterator[torch.Tensor]:
    """Row indices of each cluster-bootstrap replicate: every row of ``len(rows)`` clusters drawn with replacement."""
    for index in _index_chunks(len(rows), n_boot, seed):
        for drawn in index.tolist():
            yield torch.cat([rows[c] for c in drawn])


def cluster_resamples(groups: Any, n_boot: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Row indices of ``n_boot`` cluster-bootstrap replicates drawn from ``generator`` (None groups: rows).

    For checks that resample several things in one loop (e.g. two splits at once).
    """
    ids = _cluster_ids(groups, torch.as_tensor(groups).numel())
    rows = _cluster_rows(ids)
    for _ in range(n_boot):
        drawn = torch.randint(0, len(rows), (len(rows),), generator=generator).tolist()
        yield torch.cat([rows[c] for c in drawn])


def _percentiles(replicates: torch.Tensor, alpha: float) -> tuple[float, float]:
    if replicates.numel() == 0:
        return math.nan, math.nan
    q = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    low, high = torch.quantile(replicates, q).tolist()
    return low, high
