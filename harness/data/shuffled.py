"""Label-shuffled training data for the data randomisation test (Adebayo et al. 2018).

``shuffled-labels`` wraps any registered dataset: its ``train`` split keeps the images and permutes
the labels (a model trained on it can only memorise), every other split is the base dataset's,
untouched, so the two models are compared on the same real test images.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from harness.data import load_dataset, register_dataset
from harness.data.imageset import ImageSet


@register_dataset("shuffled-labels", category="wrapper",
                  description="a dataset whose train labels are permuted (data randomisation test)")
def shuffled_labels(split: str, *, base: str, label_seed: int = 0, **options) -> ImageSet:
    """Split ``split`` of dataset ``base``; in ``train`` the labels are permuted with ``label_seed``."""
    if base == "shuffled-labels":
        raise ValueError("shuffled-labels cannot wrap itself")
    data = load_dataset(base, split, **options)
    if split != "train":
        return data
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(label_seed))
    config = {**data.config, "shuffled_labels": {"base": base, "label_seed": label_seed}}
    return replace(data, labels=data.labels[order], name=f"{data.name}+shuffled-labels", config=config)
