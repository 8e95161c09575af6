"""The random 'world' behind synth-cxr: patients, splits, labels, poses, lesions and artifacts.

Everything here is metadata (a few numbers per patient or image), drawn from independent named
streams of one seed, so changing one option only changes what depends on it: the same ``seed``
with another ``shortcuts`` config gives the same patients, labels and lesions with other artifacts;
another ``size`` renders the same chests at another resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data.phantom import sample_image_factors, sample_patient_factors
from harness.data.shortcuts import ARTIFACTS, artifact_presence, sample_artifact_params
from harness.data.splits import images_per_patient, n_decorrelated_patients, patient_splits

_STREAMS = {"split": 1, "anatomy": 2, "image": 3, "label": 4, "lesion": 5, "artifact": 6}
N_LESION_CANDIDATES = 8  # fallbacks when a lesion lands (almost) outside the phantom's lungs
# Difficulty knobs (see the calibration note in synth_cxr.py): darkening inside the lesion and
# brightness of the visceral pleural line, both in units of the [0,1] intensity before exposure.
LUCENCY_RANGE = (0.18, 0.34)
PLEURAL_LINE_RANGE = (0.07, 0.16)


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent, explicitly seeded generator for one named part of the world."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAMS[name]]))


@dataclass
class World:
    """Per-patient and per-image metadata of every split.

    Attributes:
        split_patients: split -> patient ids.
        image_patient: int64 ``[N]`` patient of every image (images sorted by patient).
        labels: int64 ``[N]``.
        patient: patient factors (arrays over patients).
        image: image factors (arrays over images).
        lesion_choice: float ``[N, K]`` uniforms in [0,1) choosing lesion-bank entries, in order.
        lucency: float ``[N]``; pleural_line: float ``[N]``.
        artifact_uniforms: artifact -> float ``[N]`` (presence = uniform < probability).
        artifact_params: artifact geometry per image.
    """

    split_patients: dict[str, np.ndarray]
    image_patient: np.ndarray
    labels: np.ndarray
    patient: dict[str, np.ndarray]
    image: dict[str, np.ndarray]
    lesion_choice: np.ndarray
    lucency: np.ndarray
    pleural_line: np.ndarray
    artifact_uniforms: dict[str, np.ndarray]
    artifact_params: dict[str, np.ndarray]

    def split_images(self, split: str) -> np.ndarray:
        """int64 indices of the images of ``split``, in patient order."""
        return np.flatnonzero(np.isin(self.image_patient, self.split_patients[split]))

    def presence(self, split: str, rows: np.ndarray, shortcuts: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
        """artifact -> bool ``[len(rows)]`` for the configured artifacts."""
        decorrelated = split == "test_decorrelated"
        return {
            name: artifact_presence(self.labels[rows], self.artifact_uniforms[name][rows], probs, decorrelated)
            for name, probs in shortcuts.items()
        }


def build_world(seed: int, n_patients: int, prevalence: float) -> World:
    """Draw the metadata of all patients (train/val/test plus the decorrelated test patients)."""
    rng = stream(seed, "split")
    n_total = n_patients + n_decorrelated_patients(n_patients)
    counts = images_per_patient(n_total, rng)
    split_patients = patient_splits(n_patients, rng)
    image_patient = np.repeat(np.arange(n_total, dtype=np.int64), counts)
    n_images = image_patient.size
    lesion = stream(seed, "lesion")
    artifact = stream(seed, "artifact")
    return World(
        split_patients=split_patients,
        image_patient=image_patient,
        labels=(stream(seed, "label").random(n_images) < prevalence).astype(np.int64),
        patient=sample_patient_factors(n_total, stream(seed, "anatomy")),
        image=sample_image_factors(n_images, stream(seed, "image")),
        lesion_choice=lesion.random((n_images, N_LESION_CANDIDATES)),
        lucency=lesion.uniform(*LUCENCY_RANGE, n_images),
        pleural_line=lesion.uniform(*PLEURAL_LINE_RANGE, n_images),
        artifact_uniforms={name: artifact.random(n_images) for name in ARTIFACTS},
        artifact_params=sample_artifact_params(n_images, artifact),
    )
