"""Patient-wise splits: every image of a patient lands in the same split."""

from __future__ import annotations

import operator

from typing import Mapping

import numpy as np

SPLITS = ("train", "val", "test", "test_decorrelated")
#: Calibration splits (synth-cxr): the test and decorrelated-test patients of a second world drawn
#: from another seed, so thresholds are set on patients disjoint from every verdict's ``test``.
CALIB_SPLITS = ("calib", "calib_decorrelated")
CALIB_PATIENT_OFFSET = 1_000_000  # calib patient ids start here: never equal to a main-world id
_CALIB_STREAM = 7
MAIN_SPLITS = ("train", "val", "test")
MAIN_FRACTIONS = (0.70, 0.15, 0.15)
DECORRELATED_FRACTION = 0.15  # extra, distinct patients, relative to n_patients
IMAGES_PER_PATIENT = (1, 2, 3, 4)
IMAGES_PER_PATIENT_P = (0.10, 0.25, 0.35, 0.30)  # mean 2.85 images per patient


def n_decorrelated_patients(n_patients: int) -> int:
    """How many extra patients form the ``test_decorrelated`` split."""
    return max(1, int(round(DECORRELATED_FRACTION * n_patients)))


def images_per_patient(n_patients: int, rng: np.random.Generator) -> np.ndarray:
    """int64 ``[n_patients]``: number of radiographs of each patient (1 to 4)."""
    return rng.choice(np.array(IMAGES_PER_PATIENT), size=n_patients, p=np.array(IMAGES_PER_PATIENT_P))


def patient_splits(n_patients: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Assign patients to splits.

    Patients ``0 .. n_patients-1`` are shuffled and cut 70/15/15 into train/val/test (each split
    gets at least one patient); patients ``n_patients ..`` (see :func:`n_decorrelated_patients`)
    form ``test_decorrelated``.

    Args:
        n_patients: patients of train+val+test; at least 3.
        rng: seeded generator.

    Returns:
        split -> sorted int64 patient ids.
    """
    if n_patients < len(MAIN_SPLITS):
        raise ValueError(f"n_patients must be >= {len(MAIN_SPLITS)}, got {n_patients}")
    order = rng.permutation(n_patients)
    n_val = max(1, int(round(MAIN_FRACTIONS[1] * n_patients)))
    n_test = max(1, int(round(MAIN_FRACTIONS[2] * n_patients)))
    n_train = n_patients - n_val - n_test
    if n_train < 1:
        n_train, n_val = 1, n_patients - 1 - n_test
    cuts = np.cumsum([n_train, n_val])
    parts = np.split(order, cuts)
    out = {name: np.sort(part).astype(np.int64) for name, part in zip(MAIN_SPLITS, parts)}
    n_dec = n_decorrelated_patients(n_patients)
    out["test_decorrelated"] = np.arange(n_patients, n_patients + n_dec, dtype=np.int64)
    return out


def check_patient_disjoint(split_patients: Mapping[str, np.ndarray]) -> None:
    """Raise ``ValueError`` if any patient id appears in two splits."""
    seen: dict[int, str] = {}
    for split, ids in split_patients.items():
        for pid in np.unique(np.asarray(ids)).tolist():
            if pid in seen and seen[pid] != split:
                raise ValueError(f"patient {pid} is in both {seen[pid]!r} and {split!r}")
            seen[pid] = split


def calibration_world(split: str, seed: int) -> tuple[int, str, int]:
    """``(world seed, world split, patient id offset)`` of a split: calib splits live in another world."""
    if split not in CALIB_SPLITS:
        return seed, split, 0
    derived = int(np.random.SeedSequence([int(seed), _CALIB_STREAM]).generate_state(1)[0]) >> 1
    return derived, split.replace("calib", "test"), CALIB_PATIENT_OFFSET


def check_synthetic_options(split: str, size: int, n_patients: int, seed: int,
                            splits: tuple[str, ...] = SPLITS) -> tuple[int, int, int]:
    """Validate the options the synthetic datasets share; returns ``(size, n_patients, seed)`` as ints."""
    if split not in splits:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(splits)}")
    size, n_patients, seed = operator.index(size), operator.index(n_patients), operator.index(seed)
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if n_patients < 3:
        raise ValueError(f"n_patients must be >= 3, got {n_patients}")
    return size, n_patients, seed
