"""Synthetic patient demographics (age, sex) for subgroup checks, from their own seeded stream.

The draws never touch the streams that render pixels, so adding demographics to a dataset leaves
its images, labels and masks bit-identical. Ages follow roughly the NIH ChestX-ray14 population
(mean about 47 years, sd about 17, adults and adolescents); sex is male with probability
``MALE_FRACTION`` (NIH: 56.5% of images).
"""

from __future__ import annotations

import numpy as np
import torch

from harness.data.imageset import SEX_MALE

AGE_MEAN, AGE_SD, AGE_RANGE = 47.0, 17.0, (12.0, 95.0)
MALE_FRACTION = 0.565
_DEMOGRAPHICS_STREAM = 7  # beside the streams of harness.data.world (1-6)


def demographics_rng(seed: int) -> np.random.Generator:
    """The generator of the demographics of a dataset seeded with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _DEMOGRAPHICS_STREAM]))


def sample_demographics(n_patients: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Age (float years, whole years within ``AGE_RANGE``) and sex (int64, 1 = male) of each patient."""
    age = np.clip(np.round(rng.normal(AGE_MEAN, AGE_SD, n_patients)), *AGE_RANGE)
    sex = (rng.random(n_patients) < MALE_FRACTION).astype(np.int64) * SEX_MALE
    return {"age": age, "sex": sex}


def per_image(patients: dict[str, np.ndarray], patient_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Metadata tensors ``[N]`` for images of ``patient_ids``: ``age`` float32, ``sex`` int64."""
    index = patient_ids.numpy()
    return {
        "age": torch.from_numpy(patients["age"][index].astype(np.float32)),
        "sex": torch.from_numpy(patients["sex"][index].astype(np.int64)),
    }
