"""An unplanted shortcut: a token burned into most positives, with no mask and no name the checks know.

A team's real shortcut is never one of the artifacts a harness draws (the chest drain, the marker,
the border): it is a scanner's burned-in annotation, a "PORTABLE" stamp, an intensity offset of one
site (Zech et al. 2018; DeGrave et al. 2021, "AI for radiographic COVID-19 detection selects
shortcuts over signal"). ``burned-token`` wraps any binary dataset and stamps a small bright
text-like token outside the lungs of most positives and few negatives. Its ImageSet carries no mask
for it: only the unsupervised checks (SpRAy, heat outside the anatomy, occluding what the maps point
at outside the anatomy) can find it. The defect zoo uses it to prove they do.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from harness.data import load_dataset, register_dataset
from harness.data.imageset import ImageSet

GENERATOR_VERSION = "burned-token/2"  # enters the run hash of models trained on it: bump when the token changes
_STREAM = 4243
TOKEN_ROWS = ("111011101110", "101010101010", "111011101110")  # a line of "text", 3 x 12 pixels at 64 px
ANATOMY_MARGIN = 0.05  # the token keeps this fraction of the image side away from the lungs
DARK_QUANTILE = 0.3  # burned-in text sits on the dark background: the darkest 30% of the allowed places


@register_dataset("burned-token", category="wrapper",
                  description="a dataset with an unannotated token burned into most positives (unplanted shortcut)")
def burned_token(split: str, *, base: str, p_pos: float = 0.9, p_neg: float = 0.1, token_seed: int = 0,
                 **options) -> ImageSet:
    """Split ``split`` of dataset ``base`` with a bright token outside the lungs on a ``p_pos`` share of
    positives and a ``p_neg`` share of negatives (every split: the shortcut holds in test too).

    Args:
        split: any split of ``base``.
        base: a binary dataset with lung masks (e.g. ``synth-cxr``).
        p_pos, p_neg: probability of the token given label 1 / 0.
        token_seed: seeds presence and position (per split).
        **options: passed to ``base``.

    Raises:
        ValueError: ``base`` is a wrapper of the same kind, multi-label, or has no lung masks.
    """
    if base == "burned-token":
        raise ValueError("burned-token cannot wrap itself")
    if not (0.0 <= p_pos <= 1.0 and 0.0 <= p_neg <= 1.0):
        raise ValueError(f"p_pos and p_neg must lie in [0, 1], got {p_pos}, {p_neg}")
    data = load_dataset(base, split, **options)
    if data.labels.ndim != 1 or data.lung_masks is None:
        raise ValueError(f"burned-token needs a binary dataset with lung masks; {base!r} is not one")
    rng = np.random.default_rng(np.random.SeedSequence([int(token_seed), _STREAM, zlib.crc32(split.encode())]))
    present = rng.random(len(data)) < np.where(data.labels.numpy() == 1, p_pos, p_neg)
    images = stamp_tokens(data.images, data.lung_masks, torch.from_numpy(present), rng)
    config = {**data.config, "burned_token": {"base": base, "p_pos": p_pos, "p_neg": p_neg,
                                              "token_seed": token_seed}}
    return replace(data, images=images, name=f"{data.name}+burned-token", config=config)


def token_pattern(size: int) -> torch.Tensor:
    """The token as a float ``[h, w]`` {0,1} pattern, scaled with the image side (64 px: 3 x 12)."""
    base = torch.tensor([[float(c) for c in row] for row in TOKEN_ROWS])
    scale = max(1, round(size / 64))
    return base.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def stamp_tokens(images: torch.Tensor, lungs: torch.Tensor, present: torch.Tensor,
                 rng: np.random.Generator) -> torch.Tensor:
    """uint8 images with the token stamped (brightened to 235-255) at a random dark place outside the lungs.

    A place is the token box's top-left corner; it is allowed when the whole box stays clear of
    the (dilated) lungs, and chosen among the darkest :data:`DARK_QUANTILE` of the allowed places
    (by the box's mean intensity), as burned-in annotations sit on the background.
    """
    out = images.clone()
    size = images.shape[-1]
    pattern = token_pattern(size)
    h, w = pattern.shape
    margin = max(1, round(ANATOMY_MARGIN * size))
    near_lungs = F.max_pool2d(lungs.float(), 2 * margin + 1, stride=1, padding=margin) > 0
    blocked = F.max_pool2d(near_lungs.float(), (h, w), stride=1) > 0  # [N,1,S-h+1,S-w+1]
    darkness = F.avg_pool2d(images.float(), (h, w), stride=1)
    values = rng.uniform(235, 255, len(images))
    for i in torch.nonzero(present).flatten().tolist():
        free = torch.nonzero(~blocked[i, 0])
        if free.numel() == 0:
            continue
        means = darkness[i, 0][free[:, 0], free[:, 1]]
        free = free[means <= torch.quantile(means, DARK_QUANTILE)]
        y, x = free[int(rng.integers(len(free)))].tolist()
        patch = out[i, 0, y:y + h, x:x + w].float()
        out[i, 0, y:y + h, x:x + w] = torch.maximum(patch, pattern * float(values[i])).round().to(torch.uint8)
    return out
