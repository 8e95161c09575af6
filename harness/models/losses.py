"""Training losses for binary (2-logit softmax) and multi-label (K-logit sigmoid) classifiers."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def classification_loss(logits: torch.Tensor, targets: torch.Tensor, *, loss: str, label_smoothing: float = 0.0,
                        focal_gamma: float = 2.0) -> torch.Tensor:
    """Mean loss of ``logits`` against ``targets``; the label kind follows from ``targets``.

    Binary data: ``targets`` int64 ``[B]`` (1 = finding), ``logits`` ``[B,2]``. Multi-label data:
    ``targets`` float multi-hot ``[B,K]``, ``logits`` ``[B,K]``; NaN targets (unknown labels, e.g.
    CheXpert's uncertain ones under the "ignore" policy) contribute nothing: the loss is the mean
    over the known entries.

    Args:
        loss: ``cross_entropy`` (softmax CE for binary, sigmoid BCE per finding for multi-label),
            ``bce`` (multi-label only) or ``focal``.
        label_smoothing: binary: torch's ``label_smoothing``; multi-label: targets pulled towards 0.5.
        focal_gamma: focusing parameter of the focal loss.

    Raises:
        ValueError: ``bce`` on binary labels, or an unknown loss.
    """
    logits = logits.float()
    multilabel = targets.ndim == 2
    if loss == "bce" and not multilabel:
        raise ValueError("loss 'bce' needs multi-label targets [B,K]; binary data uses 'cross_entropy'")
    if loss not in ("cross_entropy", "bce", "focal"):
        raise ValueError(f"unknown loss {loss!r}")
    if not multilabel:
        if loss == "focal":
            return softmax_focal_loss(logits, targets, gamma=focal_gamma, label_smoothing=label_smoothing)
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    known = ~torch.isnan(targets)
    smoothed = _smooth(targets.float().nan_to_num(0.0), label_smoothing)
    if loss == "focal":
        elementwise = sigmoid_focal_loss(logits, smoothed, gamma=focal_gamma, reduction="none")
    else:
        elementwise = F.binary_cross_entropy_with_logits(logits, smoothed, reduction="none")
    weights = known.float()
    return (elementwise * weights).sum() / weights.sum().clamp(min=1.0)


def _smooth(targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return targets * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else targets


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, gamma: float = 2.0,
                       alpha: float | None = None, reduction: str = "mean") -> torch.Tensor:
    """Focal loss per logit (Lin et al. 2017, "Focal Loss for Dense Object Detection"), mean over all
    (``reduction="none"``: per element).

    ``BCE * (1 - p_t) ** gamma``, optionally weighted by ``alpha`` for positives and ``1 - alpha``
    for negatives; ``gamma=0, alpha=None`` is plain BCE. Equals ``torchvision.ops.sigmoid_focal_loss``
    with ``reduction="mean"`` (``alpha=None`` there is ``alpha=-1``).
    """
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss if reduction == "none" else loss.mean()


def softmax_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, gamma: float = 2.0,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Multi-class focal loss ``CE * (1 - p_t) ** gamma`` with ``p_t`` the true class' softmax probability."""
    ce = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
    p_t = torch.softmax(logits, 1).gather(1, targets[:, None])[:, 0]
    return ((1 - p_t) ** gamma * ce).mean()


__all__ = ["classification_loss", "sigmoid_focal_loss", "softmax_focal_loss"]
