"""Per-image Gaussian smoothing, shared by the generators, the defect zoo and the lesion-scale metrics."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma (in pixels) per image, as one grouped convolution.

    Args:
        images: float ``[B,1,H,W]``.
        sigma: float ``[B]``, > 0.

    Returns:
        Blurred images, same shape (reflect padding).
    """
    batch = images.shape[0]
    radius = max(1, int(math.ceil(3 * float(sigma.max()))))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None].to(images.dtype)) ** 2)
    kernel = kernel / kernel.sum(1, keepdim=True)  # [B, K]
    x = images.reshape(1, batch, *images.shape[-2:])
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=batch)
    x = F.conv2d(x, kernel[:, None, :, None], groups=batch)
    return x.reshape_as(images)
