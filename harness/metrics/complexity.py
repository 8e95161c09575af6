"""Complexity of attribution maps: Gini sparseness and entropy of the magnitude distribution, per image.

Both read the magnitude ``|map|`` (sign is irrelevant to how concentrated a map is) and are
invariant to positive rescaling, so raw maps and [0,1] views of ``abs``-type explainers score the
same. Agree with ``quantus.Sparseness`` / ``quantus.Complexity`` (``abs=True``, any ``normalise``)
up to Quantus' stabilising epsilons.
"""

from __future__ import annotations

import torch

from harness.metrics.registry import register_metric


@register_metric("sparseness", category="complexity", higher_is_better=True)
def sparseness(maps: torch.Tensor) -> torch.Tensor:
    """Gini index of the attribution magnitudes per image (Chalasani et al., ICML 2020).

    Chalasani, Chen, Chowdhury, Wu and Jha, "Concise Explanations of Neural Networks using
    Adversarial Training": with ``v`` the ``n`` magnitudes ``|map|`` sorted ascending,
    ``G = sum_i (2i - n - 1) v_i / (n sum_i v_i)``. 0 when all magnitudes are equal (a uniform map),
    ``1 - 1/n`` when one pixel carries everything; higher is sparser (more concise). Ties do not
    matter (equal values are interchangeable in the sorted order).

    Divergence from ``quantus.Sparseness``: Quantus adds 1e-7 to every value first, which turns an
    all-zero map into a score of 0; here an all-zero map has no attribution to distribute and
    scores NaN (the 0/0 of the definition). Otherwise the two agree to about ``1e-7 n / sum|map|``.

    Args:
        maps: ``[B, ...]`` attribution maps (raw and signed, or any view).

    Returns:
        float64 ``[B]`` in ``[0, 1 - 1/n]``; NaN for an all-zero map or a map with a NaN.
    """
    v = _magnitudes(maps).sort(dim=1).values
    n = v.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64, device=v.device) - n - 1
    return (v * weights).sum(1) / (n * v.sum(1))  # 0/0 = NaN for an all-zero map


@register_metric("complexity", category="complexity", higher_is_better=False)
def complexity(maps: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of each pixel's fractional contribution ``|map| / sum |map|`` (Bhatt et al. 2020).

    Bhatt, Weller and Moura, "Evaluating and Aggregating Feature-based Model Explanations", IJCAI
    2020: a map that spreads attribution over every pixel is hard to read even when faithful. In
    nats (natural log), ``0 log 0 = 0``; 0 when one pixel carries everything, ``log n`` for a
    uniform map; lower is simpler.

    Divergence from ``quantus.Complexity``: Quantus computes ``-sum p log(p + 1e-12)`` and turns an
    all-zero map into NaN through 0/0 as well; the epsilon changes values by at most ``n * 1e-12``.

    Args:
        maps: ``[B, ...]`` attribution maps.

    Returns:
        float64 ``[B]`` in ``[0, log n]``; NaN for an all-zero map or a map with a NaN.
    """
    v = _magnitudes(maps)
    p = v / v.sum(1, keepdim=True)
    terms = torch.where(p > 0, p * p.log(), torch.zeros_like(p))
    entropy = -terms.sum(1)
    undefined = p.isnan().any(1)  # all-zero (0/0) or NaN maps
    return torch.where(undefined, torch.full_like(entropy, float("nan")), entropy)


def _magnitudes(maps: torch.Tensor) -> torch.Tensor:
    if maps.ndim < 2 or maps[0].numel() == 0:
        raise ValueError(f"maps must be [B, ...] with at least one element per image, got {tuple(maps.shape)}")
    return maps.detach().flatten(1).to(torch.float64).abs()
