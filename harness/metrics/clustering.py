"""Spectral relevance analysis (SpRAy): cluster attribution maps to surface Clever-Hans strategies.

Lapuschkin et al. 2019, "Unmasking Clever Hans predictors and assessing what machines really learn":
downsample the maps of one class's predictions, build a k-nearest-neighbour affinity graph, choose the
number of clusters by the eigengap of the normalised graph Laplacian and cluster spectrally. Clusters
whose heat sits away from the anatomy are candidate shortcuts for a human to inspect.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SpectralClusters:
    """SpRAy result: a cluster label per map, the eigengap choice and each cluster's prototypes.

    Attributes:
        labels: int64 ``[N]`` cluster of each map.
        n_clusters: chosen by the largest eigengap among 2..max_clusters (or given).
        eigenvalues: the smallest eigenvalues of the normalised Laplacian (ascending).
        prototypes: per cluster, indices of the members nearest its mean downsampled map.
    """

    labels: torch.Tensor
    n_clusters: int
    eigenvalues: list[float]
    prototypes: list[list[int]]


def spectral_relevance_clusters(maps01: torch.Tensor, *, size: int = 16, n_neighbors: int = 10,
                                max_clusters: int = 6, n_clusters: int | None = None, n_prototypes: int = 4,
                                seed: int = 0) -> SpectralClusters:
    """Cluster ``[N,1,H,W]`` maps in [0,1] (SpRAy). Deterministic for a given ``seed``.

    Maps are area-downsampled to ``size`` x ``size`` and L2-normalised per image (so clusters reflect
    where the heat is, not how much). Needs at least 3 maps; ``n_neighbors`` is capped at N-1.
    """
    from scipy.sparse.csgraph import laplacian
    from sklearn.cluster import SpectralClustering
    from sklearn.neighbors import kneighbors_graph

    n = maps01.shape[0]
    if n < 3:
        raise ValueError(f"SpRAy needs at least 3 maps to cluster, got {n}")
    x = F.adaptive_avg_pool2d(maps01.float(), size).flatten(1)
    x = F.normalize(x, dim=1).double().numpy()
    k = min(n_neighbors, n - 1)
    graph = kneighbors_graph(x, k, include_self=False)
    affinity = 0.5 * (graph + graph.T)
    eig = np.linalg.eigvalsh(laplacian(affinity.toarray(), normed=True))[: max_clusters + 1]
    chosen = n_clusters or int(np.argmax(np.diff(eig[: max_clusters + 1])[1:]) + 2)
    model = SpectralClustering(n_clusters=chosen, affinity="precomputed_nearest_neighbors", n_neighbors=k,
                               random_state=seed, assign_labels="cluster_qr")
    with warnings.catch_warnings():  # a disconnected graph is what perfectly separated clusters look like
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        labels = torch.from_numpy(model.fit_predict(graph)).long()
    return SpectralClusters(labels, chosen, [float(v) for v in eig], _prototypes(x, labels, n_prototypes))


def _prototypes(x: np.ndarray, labels: torch.Tensor, n_prototypes: int) -> list[list[int]]:
    out = []
    for c in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels.numpy() == c)
        distance = np.linalg.norm(x[members] - x[members].mean(0), axis=1)
        out.append(members[np.argsort(distance, kind="stable")[:n_prototypes]].tolist())
    return out
