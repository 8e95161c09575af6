"""Robustness of explanations to small input noise: max- and avg-sensitivity (Yeh et al. 2019), batched.

Every ``n_samples x B`` perturbed image is explained in chunks of ``batch_size`` (one call of the
explainer per chunk, no per-sample loop), on the images' device, with noise drawn from a seeded
``torch.Generator``. Agree with ``quantus.MaxSensitivity`` / ``quantus.AvgSensitivity``
(``normalise=False, abs=False``, default ``similarity_func``, Frobenius norms) given the same noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from harness.metrics.registry import register_metric

ExplainFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
PredictFn = Callable[[torch.Tensor], torch.Tensor]
Norm = Literal["fro", "inf"]
OnChange = Literal["keep", "nan", "exclude"]


@dataclass(frozen=True)
class SensitivitySamples:
    """Per-sample sensitivity ratios and, when a ``predict_fn`` was given, prediction changes.

    Attributes:
        ratios: float64 ``[B, n_samples]``: ``||e(x) - e(x + d_s)|| / ||e(x)||``.
        prediction_changed: bool ``[B, n_samples]`` (the predicted class of ``x + d_s`` differs from
            that of ``x``), or None when no ``predict_fn`` was given.
    """

    ratios: torch.Tensor
    prediction_changed: torch.Tensor | None = None

    @property
    def n_changed(self) -> torch.Tensor | None:
        """int64 ``[B]``: perturbed samples whose predicted class changed (None without predict_fn)."""
        return None if self.prediction_changed is None else self.prediction_changed.sum(1)

    def reduce(self, how: Literal["max", "mean"], *, on_prediction_change: OnChange = "keep") -> torch.Tensor:
        """Max or mean over the samples of each image, float64 ``[B]``.

        ``on_prediction_change``: ``"keep"`` uses every sample (Quantus' default); ``"nan"`` gives
        NaN for an image where any sample changed the prediction (Quantus'
        ``return_nan_when_prediction_changes=True``); ``"exclude"`` drops those samples (NaN when
        all changed). A NaN ratio (all-zero reference map) propagates.
        """
        if how not in ("max", "mean") or on_prediction_change not in ("keep", "nan", "exclude"):
            raise ValueError(f"need how in 'max', 'mean' and on_prediction_change in 'keep', 'nan', 'exclude'; "
                             f"got {how!r}, {on_prediction_change!r}")
        if on_prediction_change != "keep" and self.prediction_changed is None:
            raise ValueError(f"on_prediction_change={on_prediction_change!r} needs a predict_fn")
        if on_prediction_change == "exclude":  # an all-zero reference map makes a whole row NaN anyway
            return _nan_reduce(torch.where(self.prediction_changed, torch.nan, self.ratios), how)
        value = self.ratios.amax(1) if how == "max" else self.ratios.mean(1)
        if on_prediction_change == "nan":
            value = torch.where(self.prediction_changed.any(1), torch.nan, value)
        return value


def sensitivity_samples(explain_fn: ExplainFn, images: torch.Tensor, targets: torch.Tensor, *,
                        maps: torch.Tensor | None = None, n_samples: int = 10, radius: float = 0.2,
                        norm_numerator: Norm = "fro", norm_denominator: Norm = "fro", batch_size: int = 64,
                        generator: torch.Generator | None = None,
                        predict_fn: PredictFn | None = None) -> SensitivitySamples:
    """Explain ``n_samples`` noisy copies of every image and measure how far each map moves.

    Yeh, Hsieh, Suggala, Inouye and Ravikumar, "On the (In)fidelity and Sensitivity of
    Explanations", NeurIPS 2019. Sample ``s`` of image ``b`` is ``x_b + d_{s,b}`` with ``d`` uniform
    in the L-infinity ball ``[-radius, radius)`` on every pixel and channel, unclipped (Quantus'
    default ``uniform_noise`` with ``lower_bound=radius``, which does not clip to the image range
    either); its ratio is ``||e(x_b) - e(x_b + d)|| / ||e(x_b)||`` over the flattened maps.

    Noise is drawn chunk by chunk (chunk ``k`` covers flat indices ``s * B + b`` in
    ``[k * batch_size, (k+1) * batch_size)``) from ``generator`` (on the images' device; a fresh
    one seeded with 0 when None, so results are reproducible), so the draws depend on
    ``batch_size``. Prediction changes (Quantus' ``return_nan_when_prediction_changes``) are
    reported separately when ``predict_fn`` is given; :meth:`SensitivitySamples.reduce` decides
    whether to keep, NaN or exclude them.

    Args:
        explain_fn: ``(images, targets) -> maps`` with one map per image (e.g. a bound explainer).
        images: ``[B, C, H, W]`` float images.
        targets: int64 ``[B]`` target classes, explained for every noisy copy.
        maps: the reference maps ``e(x)``; computed with ``explain_fn`` when None.
        n_samples: noisy copies per image.
        radius: half-width of the uniform noise (Quantus' ``lower_bound``).
        norm_numerator: ``"fro"`` (L2 of the flattened difference, Quantus' ``fro_norm``) or ``"inf"``.
        norm_denominator: norm of the reference map, as ``norm_numerator``.
        batch_size: perturbed images explained per call.
        generator: the random source for the noise, on the images' device.
        predict_fn: ``images -> logits [N, K]``; the predicted class is the argmax.

    Returns:
        :class:`SensitivitySamples` on the images' device (maps and predictions returned elsewhere,
        e.g. on the CPU, are moved there); ratios are NaN for an all-zero reference map.
    """
    if n_samples < 1 or batch_size < 1 or radius < 0:
        raise ValueError(f"need n_samples >= 1, batch_size >= 1, radius >= 0; got {n_samples}, {batch_size}, {radius}")
    b, device = images.shape[0], images.device
    reference = (explain_fn(images, targets) if maps is None else maps).detach().flatten(1).to(device, torch.float64)
    denominator = _norm(reference, norm_denominator)
    generator = generator if generator is not None else torch.Generator(device).manual_seed(0)
    reference_class = _predicted_class(predict_fn, images) if predict_fn is not None else None
    ratios, changed = [], []
    for start in range(0, n_samples * b, batch_size):
        which = torch.arange(start, min(start + batch_size, n_samples * b), device=device) % b
        noise = torch.rand((which.numel(), *images.shape[1:]), generator=generator, device=device, dtype=images.dtype)
        noisy = images[which] + (noise * 2 - 1) * radius
        moved = explain_fn(noisy, targets[which.to(targets.device)]).detach().flatten(1).to(device, torch.float64)
        ratios.append(_norm(reference[which] - moved, norm_numerator) / denominator[which])
        if predict_fn is not None:
            changed.append(_predicted_class(predict_fn, noisy) != reference_class[which])
    ratios_bs = torch.cat(ratios).view(n_samples, b).T
    changed_bs = torch.cat(changed).view(n_samples, b).T if predict_fn is not None else None
    ratios_bs = torch.where(denominator[:, None] == 0, torch.full_like(ratios_bs, float("nan")), ratios_bs)
    return SensitivitySamples(ratios_bs, changed_bs)


@register_metric("max_sensitivity", category="robustness", higher_is_better=False)
def max_sensitivity(explain_fn: ExplainFn, images: torch.Tensor, targets: torch.Tensor, *,
                    maps: torch.Tensor | None = None, n_samples: int = 10, radius: float = 0.2,
                    norm_numerator: Norm = "fro", norm_denominator: Norm = "fro", batch_size: int = 64,
                    generator: torch.Generator | None = None, predict_fn: PredictFn | None = None,
                    on_prediction_change: OnChange = "keep") -> torch.Tensor:
    """Largest relative change of the map over ``n_samples`` uniform-noise copies (Yeh et al. 2019).

    ``SENS_max = max_s ||e(x) - e(x + d_s)|| / ||e(x)||`` with ``d_s`` uniform in the L-infinity
    ball of ``radius``: the Monte-Carlo estimate of Yeh et al. ("On the (In)fidelity and
    Sensitivity of Explanations", NeurIPS 2019) as Quantus' ``MaxSensitivity``. Lower is more
    robust. Options as :func:`sensitivity_samples`; ``on_prediction_change`` as
    :meth:`SensitivitySamples.reduce` (the default keeps every sample, as Quantus' default; call
    :func:`sensitivity_samples` to report the prediction changes next to the score).

    Returns:
        float64 ``[B]`` >= 0; NaN for an all-zero reference map.
    """
    samples = sensitivity_samples(explain_fn, images, targets, maps=maps, n_samples=n_samples, radius=radius,
                                  norm_numerator=norm_numerator, norm_denominator=norm_denominator,
                                  batch_size=batch_size, generator=generator, predict_fn=predict_fn)
    return samples.reduce("max", on_prediction_change=on_prediction_change)


@register_metric("avg_sensitivity", category="robustness", higher_is_better=False)
def avg_sensitivity(explain_fn: ExplainFn, images: torch.Tensor, targets: torch.Tensor, *,
                    maps: torch.Tensor | None = None, n_samples: int = 10, radius: float = 0.2,
                    norm_numerator: Norm = "fro", norm_denominator: Norm = "fro", batch_size: int = 64,
                    generator: torch.Generator | None = None, predict_fn: PredictFn | None = None,
                    on_prediction_change: OnChange = "keep") -> torch.Tensor:
    """Mean relative change of the map over ``n_samples`` uniform-noise copies (Yeh et al. 2019).

    As :func:`max_sensitivity` with the mean over samples (Quantus' ``AvgSensitivity``).

    Returns:
        float64 ``[B]`` >= 0; NaN for an all-zero reference map.
    """
    samples = sensitivity_samples(explain_fn, images, targets, maps=maps, n_samples=n_samples, radius=radius,
                                  norm_numerator=norm_numerator, norm_denominator=norm_denominator,
                                  batch_size=batch_size, generator=generator, predict_fn=predict_fn)
    return samples.reduce("mean", on_prediction_change=on_prediction_change)


def _nan_reduce(r: torch.Tensor, how: Literal["max", "mean"]) -> torch.Tensor:
    """Max or mean over the non-NaN entries of each row; NaN for an all-NaN row."""
    if how == "mean":
        return r.nanmean(1)
    return torch.where(r.isnan().all(1), torch.nan, torch.where(r.isnan(), -torch.inf, r).amax(1))


def _norm(x: torch.Tensor, kind: Norm) -> torch.Tensor:
    if kind == "fro":
        return torch.linalg.vector_norm(x, ord=2, dim=1)
    if kind == "inf":
        return x.abs().amax(1)
    raise ValueError(f"unknown norm {kind!r}; expected 'fro' or 'inf'")


def _predicted_class(predict_fn: PredictFn, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return predict_fn(images).argmax(1).to(images.device)
