"""Class-averaged attribution maps: the mean and standard deviation map per pathology over its positives."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ClassMaps:
    """Per-class summary maps.

    Attributes:
        mean: float64 ``[K, *S]`` mean map per class (NaN for a class without positive images).
        std: float64 ``[K, *S]`` population standard deviation (``ddof=0``, numpy's default) per pixel.
        count: int64 ``[K]`` positive images per class.
    """

    mean: torch.Tensor
    std: torch.Tensor
    count: torch.Tensor

    def to_dict(self) -> dict[str, list]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": self.count.tolist()}


def class_mean_maps(maps: torch.Tensor, labels: torch.Tensor, *, num_classes: int | None = None) -> ClassMaps:
    """Mean and standard-deviation map of each class over the images positive for it.

    Seed 001 (ResNet-50 on NIH ChestX-ray14) averages Grad-CAM over all positive test images of a
    pathology: the mean map shows where the model looks for it (border heat suggests
    "extrathoracic bias"), the standard-deviation map how consistent that is. Batched: the
    per-class sums are one matrix product of the ``[N, K]`` label matrix with the flattened maps
    (centred on the overall mean map first, so the one-pass variance keeps its precision when all
    maps share a large offset).

    Args:
        maps: ``[N, C, *S]`` maps, with ``C == 1`` (one map per image, shared by all its classes)
            or ``C == K`` (``maps[n, k]`` explains class ``k``, as Grad-CAM per pathology).
        labels: ``[N]`` integer class indices, or ``[N, K]`` multi-hot labels.
        num_classes: ``K`` for integer labels (default ``max(labels) + 1``).

    Returns:
        ``ClassMaps`` with ``mean`` and ``std`` of shape ``[K, *S]``. A class without positive images
        gets NaN maps and count 0. A NaN in any map makes every class's maps NaN at that pixel
        (``0 * NaN`` is NaN in the matrix product): drop undefined maps first.
    """
    x = torch.as_tensor(maps).detach().to(torch.float64)
    weights = _label_matrix(labels, num_classes).to(x.device)  # [N, K]
    n, k = weights.shape
    if x.ndim < 2 or x.shape[0] != n or x.shape[1] not in (1, k):
        raise ValueError(f"maps {tuple(x.shape)} must be [N, 1 or K, ...] for N={n} labels and K={k} classes")
    spatial = x.shape[2:]
    count = weights.sum(0)  # [K]
    flat = x.reshape(n, x.shape[1], -1)  # [N, C, P]
    eq = "nk,np->kp" if x.shape[1] == 1 else "nk,nkp->kp"
    values = flat[:, 0] if x.shape[1] == 1 else flat
    shifted = values - values.mean(0, keepdim=True)  # centring keeps E[x^2] - E[x]^2 free of cancellation
    mean_shifted = torch.einsum(eq, weights, shifted) / count[:, None]
    var = torch.einsum(eq, weights, shifted.pow(2)) / count[:, None] - mean_shifted.pow(2)
    mean = mean_shifted + values.mean(0).expand_as(mean_shifted)
    return ClassMaps(mean.reshape(k, *spatial), var.clamp_min(0).sqrt().reshape(k, *spatial), count.long())


def _label_matrix(labels: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """float64 ``[N, K]`` 0/1 matrix from integer labels ``[N]`` or multi-hot labels ``[N, K]``."""
    y = torch.as_tensor(labels).detach()
    if y.ndim == 2:
        return (y != 0).to(torch.float64)
    if y.ndim != 1 or y.is_floating_point():
        raise ValueError(f"labels must be integer [N] or multi-hot [N, K], got {y.dtype} {tuple(y.shape)}")
    k = int(y.max()) + 1 if num_classes is None else num_classes
    return torch.nn.functional.one_hot(y.long(), k).to(torch.float64)
