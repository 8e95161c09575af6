"""The random world behind synth-cxr14: patients, demographics, co-occurring findings, parameters.

Like :mod:`harness.data.world` everything is metadata drawn from independent named streams of one
seed. Findings are drawn per image from a logistic model

    logit p(finding k) = b_k + age_k * z_age + male_k * is_male + PATIENT_WEIGHT * u_pk + sum_j c_kj * y_j

in the order of ``DRAW_ORDER`` (so ``y_j`` are findings drawn before ``k``): older patients have
more cardiomegaly, effusions and nodules, young men more pneumothoraces, cardiomegaly makes an
effusion likelier (heart failure), and a per-patient propensity ``u_pk ~ N(0,1)`` makes follow-up
images of one patient share findings. Each intercept ``b_k`` is solved by bisection so that the
expected marginal rate of finding k equals its target prevalence exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data.demographics import AGE_MEAN, AGE_SD, sample_demographics
from harness.data.phantom import sample_image_factors, sample_patient_factors
from harness.data.shortcuts import ARTIFACTS, DECORRELATED_RATE, sample_artifact_params
from harness.data.splits import images_per_patient, n_decorrelated_patients, patient_splits
from harness.data.world import LUCENCY_RANGE, N_LESION_CANDIDATES, PLEURAL_LINE_RANGE

FINDINGS = ("nodule", "effusion", "cardiomegaly", "pneumothorax")
DRAW_ORDER = ("cardiomegaly", "effusion", "pneumothorax", "nodule")
# Default marginal prevalence per image (far above NIH's 2-12% so that every finding is learnable
# from a few thousand images); about 40% of images have no finding.
PREVALENCE = {"nodule": 0.20, "effusion": 0.25, "cardiomegaly": 0.18, "pneumothorax": 0.16}
AGE_WEIGHT = {"nodule": 0.5, "effusion": 0.6, "cardiomegaly": 0.9, "pneumothorax": -0.5}
MALE_WEIGHT = {"nodule": 0.0, "effusion": 0.0, "cardiomegaly": 0.2, "pneumothorax": 0.6}
COUPLING = {("effusion", "cardiomegaly"): 1.5, ("pneumothorax", "effusion"): 0.4}
PATIENT_WEIGHT = 1.5
# Appearance ranges (uniform), in canonical units / [0,1] intensity before exposure.
NODULE_RADIUS = (0.05, 0.085)
NODULE_CONTRAST = (0.20, 0.30)
SECOND_NODULE_P = 0.35
EFFUSION_DEPTH = (0.30, 0.50)  # fluid height at the lateral wall, fraction of the lung height
EFFUSION_DENSITY = (0.16, 0.26)
EFFUSION_SIDES_P = (0.40, 0.30, 0.30)  # patient's right only, left only, both
HEART_SCALE_W = (1.28, 1.45)
HEART_SCALE_H = (1.08, 1.20)
_STREAMS = {"split": 1, "anatomy": 2, "image": 3, "label": 4, "lesion": 5, "artifact": 6, "finding": 7, "demo": 8}
_NAMESPACE = 14  # keeps these streams apart from synth-cxr's streams of the same seed


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent, explicitly seeded generator for one named part of the world."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _NAMESPACE, _STREAMS[name]]))


@dataclass
class World14:
    """Per-patient and per-image metadata of every split (arrays over patients or images).

    Attributes:
        split_patients: split -> patient ids.
        image_patient: int64 ``[N]`` patient of every image.
        labels: int64 ``[N, K]`` multi-hot, columns in ``FINDINGS`` order.
        patient, image: anatomy and pose factors (see :mod:`harness.data.phantom`).
        demographics: ``age`` and ``sex`` arrays over patients.
        finding: per-image appearance parameters of every finding (drawn for every image).
        artifact_uniforms, artifact_params: planted shortcuts (see :mod:`harness.data.shortcuts`).
    """

    split_patients: dict[str, np.ndarray]
    image_patient: np.ndarray
    labels: np.ndarray
    patient: dict[str, np.ndarray]
    image: dict[str, np.ndarray]
    demographics: dict[str, np.ndarray]
    finding: dict[str, np.ndarray]
    artifact_uniforms: dict[str, np.ndarray]
    artifact_params: dict[str, np.ndarray]

    def split_images(self, split: str) -> np.ndarray:
        """int64 indices of the images of ``split``, in patient order."""
        return np.flatnonzero(np.isin(self.image_patient, self.split_patients[split]))

    def condition(self, on: str, rows: np.ndarray) -> np.ndarray:
        """int64 ``[len(rows)]`` in {0,1}: the variable a shortcut is tied to (a finding, ``any_finding``, ``male``)."""
        if on == "male":
            return self.demographics["sex"][self.image_patient[rows]].astype(np.int64)
        if on == "any_finding":
            return self.labels[rows].any(1).astype(np.int64)
        return self.labels[rows, FINDINGS.index(on)]

    def presence(self, split: str, rows: np.ndarray, shortcuts: dict[str, dict]) -> dict[str, np.ndarray]:
        """artifact -> bool ``[len(rows)]`` for the configured artifacts."""
        out = {}
        for name, spec in shortcuts.items():
            uniforms = self.artifact_uniforms[name][rows]
            if split == "test_decorrelated":
                out[name] = uniforms < DECORRELATED_RATE
            else:
                out[name] = uniforms < np.where(self.condition(spec["on"], rows) == 1, spec["p_pos"], spec["p_neg"])
        return out


def build_world14(seed: int, n_patients: int, prevalence: dict[str, float]) -> World14:
    """Draw the metadata of all patients (train/val/test plus the decorrelated test patients)."""
    rng = stream(seed, "split")
    n_total = n_patients + n_decorrelated_patients(n_patients)
    counts = images_per_patient(n_total, rng)
    split_patients = patient_splits(n_patients, rng)
    image_patient = np.repeat(np.arange(n_total, dtype=np.int64), counts)
    n_images = image_patient.size
    demographics = sample_demographics(n_total, stream(seed, "demo"))
    artifact = stream(seed, "artifact")
    return World14(
        split_patients=split_patients,
        image_patient=image_patient,
        labels=draw_labels(image_patient, demographics, prevalence, stream(seed, "label")),
        patient=sample_patient_factors(n_total, stream(seed, "anatomy")),
        image=sample_image_factors(n_images, stream(seed, "image")),
        demographics=demographics,
        finding=sample_finding_params(n_images, stream(seed, "finding"), stream(seed, "lesion")),
        artifact_uniforms={name: artifact.random(n_images) for name in ARTIFACTS},
        artifact_params=sample_artifact_params(n_images, artifact),
    )


def draw_labels(
    image_patient: np.ndarray,
    demographics: dict[str, np.ndarray],
    prevalence: dict[str, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """int64 ``[N, K]`` multi-hot labels from the logistic co-occurrence model (module docstring)."""
    age_z = (demographics["age"][image_patient] - AGE_MEAN) / AGE_SD
    male = demographics["sex"][image_patient].astype(np.float64)
    propensity = rng.standard_normal((len(demographics["age"]), len(FINDINGS)))[image_patient]
    uniforms = rng.random((image_patient.size, len(FINDINGS)))
    labels = np.zeros((image_patient.size, len(FINDINGS)), dtype=np.int64)
    for name in DRAW_ORDER:
        k = FINDINGS.index(name)
        logit = AGE_WEIGHT[name] * age_z + MALE_WEIGHT[name] * male + PATIENT_WEIGHT * propensity[:, k]
        for (target, source), weight in COUPLING.items():
            if target == name:
                logit = logit + weight * labels[:, FINDINGS.index(source)]
        logit = logit + _intercept(logit, prevalence[name])
        labels[:, k] = uniforms[:, k] < 1 / (1 + np.exp(-logit))
    return labels


def _intercept(logit: np.ndarray, target: float) -> float:
    """The shift ``b`` with ``mean(sigmoid(logit + b)) == target`` (bisection; the mean is monotone in b)."""
    if target <= 0.0 or target >= 1.0:
        return -np.inf if target <= 0.0 else np.inf
    low, high = -30.0, 30.0
    for _ in range(60):
        mid = 0.5 * (low + high)
        if np.mean(1 / (1 + np.exp(-(logit + mid)))) < target:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def sample_finding_params(n: int, rng: np.random.Generator, lesion: np.random.Generator) -> dict[str, np.ndarray]:
    """Appearance of every finding for ``n`` images (drawn whether present or not)."""
    second = rng.random(n) < SECOND_NODULE_P
    where = rng.random((n, 2))
    where[~second, 1] = np.nan
    sides = rng.choice(3, size=n, p=np.array(EFFUSION_SIDES_P))
    return {
        "nodule_where": where,
        "nodule_radius": rng.uniform(*NODULE_RADIUS, (n, 2)),
        "nodule_contrast": rng.uniform(*NODULE_CONTRAST, (n, 2)),
        "effusion_sides": np.stack([sides != 1, sides != 0], 1).astype(np.float64),  # right, left
        "effusion_depth": rng.uniform(*EFFUSION_DEPTH, (n, 2)),
        "effusion_density": rng.uniform(*EFFUSION_DENSITY, n),
        "heart_scale_w": rng.uniform(*HEART_SCALE_W, n),
        "heart_scale_h": rng.uniform(*HEART_SCALE_H, n),
        "lesion_choice": lesion.random((n, N_LESION_CANDIDATES)),
        "lucency": lesion.uniform(*LUCENCY_RANGE, n),
        "pleural_line": lesion.uniform(*PLEURAL_LINE_RANGE, n),
    }
