"""Validation metrics of a classifier on a uint8 split: loss, AUROC (binary or macro multi-label), accuracy."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.losses import classification_loss


@torch.no_grad()
def evaluate(model: nn.Module, images_u8: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256,
             precision: str = "fp32", channels_last: bool = False) -> dict[str, Any]:
    """Loss, AUROC and accuracy of ``model`` on uint8 images ``[N,1,H,W]``.

    Binary labels ``[N]``: cross-entropy, AUROC of the class-1 softmax probability, argmax
    accuracy; AUROC is NaN when ``labels`` holds a single class. Multi-label labels ``[N,K]``:
    BCE, macro AUROC over the findings with both classes present (``per_class_auroc`` lists each,
    NaN where undefined), accuracy of the 0.5-thresholded sigmoids over all labels; unknown (NaN)
    labels are left out. Leaves the model in eval mode.
    """
    model.eval()
    device = next(model.parameters()).device
    logits = []
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        x = images_u8[start:stop].to(device).float().div_(255.0)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits.append(model(x).float())
    all_logits = torch.cat(logits)
    labels = labels.to(device)
    if labels.ndim == 2:
        return _evaluate_multilabel(all_logits, labels.float())
    loss = F.cross_entropy(all_logits, labels).item()
    accuracy = (all_logits.argmax(1) == labels).float().mean().item()
    y = labels.cpu().numpy()
    score = torch.softmax(all_logits, 1)[:, 1].cpu().numpy()
    return {"loss": loss, "auroc": _auroc(y, score), "accuracy": accuracy}


def _evaluate_multilabel(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    """Multi-label metrics over the known labels (NaN = unknown is left out, per finding)."""
    known = ~torch.isnan(labels)
    loss = classification_loss(logits, labels, loss="bce").item()
    probs = torch.sigmoid(logits)
    accuracy = ((probs > 0.5).float() == labels)[known].float().mean().item()
    y, p, keep = labels.cpu().numpy(), probs.cpu().numpy(), known.cpu().numpy()
    per_class = [_auroc(y[keep[:, k], k], p[keep[:, k], k]) for k in range(y.shape[1])]
    defined = [a for a in per_class if not math.isnan(a)]
    macro = sum(defined) / len(defined) if defined else float("nan")
    return {"loss": loss, "auroc": macro, "accuracy": accuracy, "per_class_auroc": per_class}


def _auroc(y, score) -> float:
    """AUROC by the Mann-Whitney U statistic with average ranks for ties (Hanley & McNeil 1982): sklearn's
    ``roc_auc_score`` within float rounding (tested), NaN for one class. Not sklearn, whose import costs a
    training process 1-2 s; not ``harness.metrics`` either (a later stage: ``auroc`` there is the same formula,
    batched over bootstrap rows)."""
    s = torch.as_tensor(score, dtype=torch.float64).flatten()
    positive = torch.as_tensor(y).flatten() != 0
    n_pos = int(positive.sum())
    n_neg = len(s) - n_pos
    if n_pos == 0 or n_neg == 0 or bool(s.isnan().any()):
        return float("nan")
    _, inverse, counts = torch.unique(s, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    average_rank = ends - (counts.to(torch.float64) - 1) / 2  # ranks 1..N; a tie group shares its mean rank
    rank_sum = float(average_rank[inverse][positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


__all__ = ["evaluate"]
