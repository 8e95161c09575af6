"""Faithfulness of attribution maps: deletion and insertion curves and their AUC (Petsiuk et al. 2018).

Pixels are ranked once per image by decreasing attribution (ties in row-major pixel order: a
stable sort), and all ``B x (n_steps + 1)`` partially deleted or inserted images are scored by the
model in chunks of ``batch_size`` on the images' device (no per-sample loop).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch

from harness.metrics.registry import register_metric
from harness.metrics.structural import separable_filter

ModelFn = Callable[[torch.Tensor], torch.Tensor]
Baseline = float | torch.Tensor | Literal["blur"]
Score = Literal["softmax", "logit"]

RISE_BLUR_SIZE, RISE_BLUR_SIGMA = 11, 5.0  # the Gaussian of RISE's insertion substrate


def deletion_curve(model: ModelFn, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                   n_steps: int = 50, baseline: Baseline = 0.0, score: Score = "softmax",
                   batch_size: int = 64) -> torch.Tensor:
    """Target-class score as the most-attributed pixels are replaced by the baseline, ``[B, n_steps+1]``.

    Petsiuk, Das and Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box Models",
    BMVC 2018: a faithful map names first the pixels whose removal destroys the prediction, so the
    curve falls fast. Point ``k`` (fraction ``k / n_steps``) has the ``floor(k N / n_steps)``
    top-ranked of the ``N = H W`` pixels replaced (all channels of a pixel together); point 0 is the
    intact image, the last point is all baseline. RISE's deletion substrate is 0 (black).

    Args:
        model: ``images -> logits [N, K]``, in eval mode (called under ``torch.no_grad``).
        images: ``[B, C, H, W]`` float images.
        maps: ``[B, ...]`` attributions with ``H * W`` elements per image (``[B,1,H,W]``).
        targets: int64 ``[B]`` classes whose score is tracked.
        n_steps: number of steps, 1 to ``H * W``.
        baseline: replacement values: a constant, ``"blur"`` (the image under RISE's 11x11 Gaussian,
            sigma 5; borders mirrored where RISE pads with zeros), or a tensor broadcastable to
            ``images``.
        score: ``"softmax"`` probability (RISE) or the raw ``"logit"``.
        batch_size: images scored per model call.

    Returns:
        float64 ``[B, n_steps + 1]``; a row is NaN where the map has a NaN.
    """
    return _removal_curve(model, images, maps, targets, insert=False, n_steps=n_steps, baseline=baseline,
                          score=score, batch_size=batch_size)


def insertion_curve(model: ModelFn, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                    n_steps: int = 50, baseline: Baseline = "blur", score: Score = "softmax",
                    batch_size: int = 64) -> torch.Tensor:
    """Target-class score as the most-attributed pixels are restored onto the baseline, ``[B, n_steps+1]``.

    Petsiuk et al. (BMVC 2018): starting from the baseline (RISE: a blurred copy of the image),
    point ``k`` has the ``floor(k N / n_steps)`` top-ranked pixels restored; a faithful map makes
    the curve rise fast. Point 0 is all baseline, the last point the intact image. Options as
    :func:`deletion_curve`.

    Returns:
        float64 ``[B, n_steps + 1]``; a row is NaN where the map has a NaN.
    """
    return _removal_curve(model, images, maps, targets, insert=True, n_steps=n_steps, baseline=baseline,
                          score=score, batch_size=batch_size)


def curve_auc(curve: torch.Tensor) -> torch.Tensor:
    """Trapezoid area under ``[B, T+1]`` curves sampled at fractions ``k / T`` of [0, 1], float64 ``[B]``."""
    c = curve.to(torch.float64)
    if c.ndim != 2 or c.shape[1] < 2:
        raise ValueError(f"curves must be [B, T+1] with T >= 1, got shape {tuple(curve.shape)}")
    return (c[:, :-1] + c[:, 1:]).sum(1) / (2 * (c.shape[1] - 1))


@register_metric("deletion_auc", category="faithfulness", higher_is_better=False)
def deletion_auc(model: ModelFn, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                 n_steps: int = 50, baseline: Baseline = 0.0, score: Score = "softmax",
                 batch_size: int = 64) -> torch.Tensor:
    """Area under the deletion curve (Petsiuk et al., BMVC 2018); lower is more faithful.

    :func:`curve_auc` of :func:`deletion_curve` (same options). Compare maps of one model on one
    image set: the value depends on the model's confidence.

    Returns:
        float64 ``[B]`` (in [0, 1] for ``score="softmax"``); NaN where the map has a NaN.
    """
    return curve_auc(deletion_curve(model, images, maps, targets, n_steps=n_steps, baseline=baseline,
                                    score=score, batch_size=batch_size))


@register_metric("insertion_auc", category="faithfulness", higher_is_better=True)
def insertion_auc(model: ModelFn, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                  n_steps: int = 50, baseline: Baseline = "blur", score: Score = "softmax",
                  batch_size: int = 64) -> torch.Tensor:
    """Area under the insertion curve (Petsiuk et al., BMVC 2018); higher is more faithful.

    :func:`curve_auc` of :func:`insertion_curve` (same options).

    Returns:
        float64 ``[B]`` (in [0, 1] for ``score="softmax"``); NaN where the map has a NaN.
    """
    return curve_auc(insertion_curve(model, images, maps, targets, n_steps=n_steps, baseline=baseline,
                                     score=score, batch_size=batch_size))


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """0-based rank of every pixel by decreasing attribution, int64 ``[B, N]`` (ties: lower index first)."""
    flat = maps.detach().flatten(1)
    order = flat.sort(dim=1, descending=True, stable=True).indices
    positions = torch.arange(flat.shape[1], device=flat.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, positions)


def _removal_curve(model: ModelFn, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, *,
                   insert: bool, n_steps: int, baseline: Baseline, score: Score, batch_size: int) -> torch.Tensor:
    b, _, h, w = _check_inputs(model, images, maps, targets, n_steps, score)
    ranks = pixel_ranks(maps).to(images.device)
    counts = torch.arange(n_steps + 1, device=images.device) * (h * w) // n_steps
    substrate = _baseline(images, baseline)
    scores = []
    for start in range(0, b * (n_steps + 1), batch_size):
        flat = torch.arange(start, min(start + batch_size, b * (n_steps + 1)), device=images.device)
        img, step = flat // (n_steps + 1), flat % (n_steps + 1)
        top = (ranks[img] < counts[step, None]).view(-1, 1, h, w)  # pixels taken from the substrate
        x = torch.where(top, images[img], substrate[img]) if insert else torch.where(top, substrate[img], images[img])
        scores.append(_target_score(model, x, targets.to(images.device)[img], score))
    curve = torch.cat(scores).view(b, n_steps + 1)
    bad = maps.detach().flatten(1).isnan().any(1).to(curve.device)
    return torch.where(bad[:, None], torch.full_like(curve, float("nan")), curve)


def _check_inputs(model: ModelFn, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                  n_steps: int, score: Score) -> tuple[int, int, int, int]:
    if images.ndim != 4:
        raise ValueError(f"images must be [B,C,H,W], got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if maps.shape[0] != b or maps[0].numel() != h * w or targets.shape != (b,):
        raise ValueError(f"need one [H,W] map and one target per image: images {tuple(images.shape)}, "
                         f"maps {tuple(maps.shape)}, targets {tuple(targets.shape)}")
    if not 1 <= n_steps <= h * w:
        raise ValueError(f"n_steps must be in [1, {h * w}], got {n_steps}")
    if score not in ("softmax", "logit"):
        raise ValueError(f"score must be 'softmax' or 'logit', got {score!r}")
    if getattr(model, "training", False):
        raise ValueError("the model is in training mode: call model.eval() (BatchNorm and dropout change scores)")
    return b, c, h, w


def _baseline(images: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    if isinstance(baseline, str):
        if baseline != "blur":
            raise ValueError(f"baseline must be a number, a tensor or 'blur', got {baseline!r}")
        offsets = torch.arange(RISE_BLUR_SIZE, dtype=torch.float64) - RISE_BLUR_SIZE // 2
        kernel = torch.exp(-0.5 * (offsets / RISE_BLUR_SIGMA) ** 2)
        return separable_filter(images, kernel / kernel.sum())
    return torch.as_tensor(baseline, dtype=images.dtype, device=images.device).expand_as(images)


def _target_score(model: ModelFn, x: torch.Tensor, targets: torch.Tensor, score: Score) -> torch.Tensor:
    with torch.no_grad():
        logits = model(x).to(x.device, torch.float64)
    values = logits.softmax(1) if score == "softmax" else logits
    return values.gather(1, targets[:, None]).squeeze(1)
