"""synth-cxr: deterministic synthetic chest radiographs with real pneumothorax shapes and shortcuts.

Each image is a procedural frontal chest radiograph (:mod:`harness.data.phantom`); positives carry a
pneumothorax whose shape and position come from a real SIIM-ACR annotation
(:mod:`harness.data.lesions`): a lucent region without lung markings, bounded by a thin bright
pleural line. Optional artifacts (:mod:`harness.data.shortcuts`) can be correlated with the label.
Patients have 1-4 images each and splits are patient-wise (:mod:`harness.data.splits`). The one
finding is ``"pneumothorax"``; ``metadata`` holds each patient's ``age`` and ``sex``, drawn from a
separate stream (:mod:`harness.data.demographics`) so they change no pixel and no cache file.

Calibration: the difficulty knobs are ``LUCENCY_RANGE`` and ``PLEURAL_LINE_RANGE`` in
:mod:`harness.data.world` and the ``noise`` range in :mod:`harness.data.phantom`. Measured with the
project trainer (zoo entry ``resnet18``, recipe ``pneumothorax_cnn`` cpu: Adam 1e-3, batch 32,
5 epochs, with its augmentation, 64x64, CPU): lucency 0.18-0.34 gives validation AUROC 0.941
(per epoch 0.787, 0.854, 0.902, 0.916, 0.941; 54 s on 2 idle cores); 0.16-0.30 gives 0.932.
At 0.12-0.26 the same recipe did not learn in 5 epochs (0.51-0.56): the task has a cliff, so the
default keeps a margin above it. Synthetic lesions are median ~59 px at 64x64 (1.4% of the image).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from harness.data import register_dataset
from harness.data.cache import cached_split, file_sha256
from harness.data.demographics import demographics_rng, per_image, sample_demographics
from harness.data.imageset import ImageSet
from harness.data.lesions import LesionBank, load_lesion_bank, render_pneumothorax, siim_csv_path
from harness.data.phantom import Anatomy, batch_factors, expose, render_anatomy
from harness.data.shortcuts import apply_artifacts, normalise_shortcuts
from harness.data.splits import CALIB_SPLITS, SPLITS, calibration_world, check_synthetic_options, n_decorrelated_patients
from harness.data.texture import gaussian_blur, smooth_noise
from harness.data.world import World, build_world

log = logging.getLogger(__name__)

GENERATOR_VERSION = "synth-cxr/2"
RENDER_CHUNK = 128  # images rendered together (bounds memory at 224x224); part of the version
_RENDER_STREAM = 101  # seeds the pixel noise of each chunk (metadata streams live in world.py)
CALIBRATION_AUROC = {"resnet18 cpu recipe, seed 0": 0.941}  # see the module docstring
FINDING_NAMES = ("pneumothorax",)


def make_config(
    split: str,
    *,
    size: int = 64,
    n_patients: int = 700,
    prevalence: float = 0.5,
    shortcuts: dict | None = None,
    seed: int = 0,
) -> dict:
    """Validate the options of :func:`synth_cxr` into its full, JSON-serialisable config."""
    size, n_patients, seed = check_synthetic_options(split, size, n_patients, seed, SPLITS + CALIB_SPLITS)
    if not 0.0 <= float(prevalence) <= 1.0:
        raise ValueError(f"prevalence must lie in [0, 1], got {prevalence}")
    return {
        "dataset": "synth-cxr",
        "split": split,
        "size": size,
        "n_patients": n_patients,
        "prevalence": float(prevalence),
        "shortcuts": normalise_shortcuts(shortcuts),
        "seed": seed,
        "generator_version": GENERATOR_VERSION,
        "lesion_source_sha256": file_sha256(siim_csv_path()),
    }


@register_dataset("synth-cxr", category="synthetic", description="synthetic pneumothorax CXR (SIIM shapes, shortcuts)")
def synth_cxr(
    split: str,
    *,
    size: int = 64,
    n_patients: int = 700,
    prevalence: float = 0.5,
    shortcuts: dict | None = None,
    seed: int = 0,
    cache_dir: str | None = None,
) -> ImageSet:
    """One split of the synthetic pneumothorax dataset, generated once and cached on disk.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` (about 70/15/15 of ``n_patients``) or
            ``"test_decorrelated"`` (``0.15 * n_patients`` further patients, every artifact at
            rate 0.5 in both classes); ``"calib"`` and ``"calib_decorrelated"``: as ``test`` and
            ``test_decorrelated`` but of other patients (a second world from a derived seed, ids
            from 1,000,000), where suite thresholds are calibrated.
        size: image edge in pixels (64 for the CPU profile, 224 for the GPU profile).
        n_patients: patients of train+val+test; each has 1-4 images (2.85 on average).
        prevalence: probability that an image is positive.
        shortcuts: ``{"chest_drain"|"marker"|"border": {"p_pos": p1, "p_neg": p0}}``: probability
            of the artifact given label 1 / label 0 in train, val and test. ``None``: all three at
            0.3 for both classes. Unlisted artifacts are absent.
        seed: seed of every random choice.
        cache_dir: cache folder; default ``$XAI_HARNESS_CACHE/data``, else
            ``$XDG_CACHE_HOME/xai-harness/data``, else ``~/.cache/xai-harness/data``.

    Returns:
        The split as an :class:`ImageSet` named ``synth-cxr/<split>``.
    """
    config = make_config(split, size=size, n_patients=n_patients, prevalence=prevalence, shortcuts=shortcuts, seed=seed)
    return cached_split("synth-cxr", config, lambda: generate(config, cache_dir=cache_dir), to_arrays, from_arrays,
                        cache_dir)


def generate(config: dict, cache_dir: str | Path | None = None) -> ImageSet:
    """Render the split described by ``config`` (from :func:`make_config`), without the dataset cache.

    Args:
        config: the full config.
        cache_dir: where the lesion bank is cached.

    Returns:
        The split.
    """
    started = time.perf_counter()
    world_seed, world_split, id_offset = calibration_world(config["split"], config["seed"])
    world = build_world(world_seed, config["n_patients"], config["prevalence"])
    rows = world.split_images(world_split)
    bank = load_lesion_bank(cache_dir) if world.labels[rows].any() else None
    render = {**config, "seed": world_seed, "split": world_split}
    parts = [
        _render_chunk(world, rows[i : i + RENDER_CHUNK], render, bank, chunk=i // RENDER_CHUNK)
        for i in range(0, rows.size, RENDER_CHUNK)
    ]
    merged = {k: torch.cat([p[k] for p in parts]) for k in ("images", "lesion_masks", "lung_masks")}
    artifacts = {name: torch.cat([p["artifacts"][name] for p in parts]) for name in config["shortcuts"]}
    seconds = time.perf_counter() - started
    log.info("generated %s: %d images at %dpx in %.1fs", config["split"], rows.size, config["size"], seconds)
    return ImageSet(
        images=merged["images"],
        labels=torch.from_numpy(world.labels[rows].copy()),
        lesion_masks=merged["lesion_masks"],
        lung_masks=merged["lung_masks"],
        artifact_masks=artifacts,
        patient_ids=torch.from_numpy(world.image_patient[rows].copy()) + id_offset,
        name=f"synth-cxr/{config['split']}",
        config=config,
        finding_names=FINDING_NAMES,
        metadata=patient_metadata(config, torch.from_numpy(world.image_patient[rows].copy()) + id_offset),
    )


def _render_chunk(world: World, rows: np.ndarray, config: dict, bank: LesionBank | None, chunk: int) -> dict:
    """Render the images ``rows`` of the world: anatomy, lesion, blur, exposure, artifacts, noise."""
    size, batch = config["size"], rows.size
    entropy = np.random.SeedSequence([config["seed"], _RENDER_STREAM, SPLITS.index(config["split"]), chunk])
    gen = torch.Generator().manual_seed(int(entropy.generate_state(1, dtype=np.uint64)[0] >> 1))
    pat = batch_factors(world.patient, world.image_patient[rows], "cpu")
    img = batch_factors(world.image, rows, "cpu")
    texture = torch.cat([smooth_noise(batch, size, 6, gen), smooth_noise(batch, size, max(8, size // 3), gen)], 1)
    anatomy = render_anatomy(pat, img, size, texture)
    lesion_masks, keep, delta = _lesions(world, rows, anatomy, bank)
    x = anatomy.base + anatomy.parenchyma * keep + delta
    x = expose(gaussian_blur(x, img["blur"].flatten() * (size / 64.0) ** 0.5), img)
    present = {k: torch.from_numpy(v) for k, v in world.presence(config["split"], rows, config["shortcuts"]).items()}
    x, artifacts = apply_artifacts(x, present, batch_factors(world.artifact_params, rows, "cpu"))
    x = x + img["noise"] * torch.randn(x.shape, generator=gen)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    return {"images": images, "lesion_masks": lesion_masks, "lung_masks": anatomy.lung_mask, "artifacts": artifacts}


def _lesions(world: World, rows: np.ndarray, anatomy: Anatomy, bank: LesionBank | None) -> tuple:
    """Lesion masks and their effect on the image: ``(masks, parenchyma keep factor, intensity delta)``."""
    masks = torch.zeros_like(anatomy.lung_mask)
    keep, delta = torch.ones_like(anatomy.lung_soft), torch.zeros_like(anatomy.lung_soft)
    pos = torch.from_numpy(np.flatnonzero(world.labels[rows] == 1))
    if pos.numel() == 0:
        return masks, keep, delta
    picked = rows[pos.numpy()]
    to4 = lambda a: torch.from_numpy(a[picked]).float()[:, None, None, None]  # noqa: E731
    masks[pos], keep[pos], delta[pos] = render_pneumothorax(
        bank, world.lesion_choice[picked], anatomy.lung_mask[pos], anatomy.lung_soft[pos],
        anatomy.wall_depth[pos], to4(world.lucency), to4(world.pleural_line),
    )
    return masks, keep, delta


def to_arrays(images: ImageSet) -> dict[str, np.ndarray]:
    """An ImageSet as plain arrays for the cache (masks bit-packed, config as a JSON string)."""
    pack = lambda m: np.packbits(m.numpy(), axis=-1)  # noqa: E731
    arrays = {
        "images": images.images.numpy(),
        "labels": images.labels.numpy(),
        "patient_ids": images.patient_ids.numpy(),
        "lesion_masks": pack(images.lesion_masks),
        "lung_masks": pack(images.lung_masks),
        "config": np.str_(json.dumps(images.config, sort_keys=True)),
    }
    arrays.update({f"artifact__{k}": pack(v) for k, v in images.artifact_masks.items()})
    return arrays


def from_arrays(arrays: dict[str, np.ndarray], config: dict) -> ImageSet:
    """Rebuild an ImageSet from :func:`to_arrays` output, checking it was made from ``config``.

    Raises:
        ValueError: the stored config differs, or an array has the wrong shape or dtype.
        KeyError: an array is missing.
    """
    if json.loads(str(arrays["config"])) != config:
        raise ValueError("stored config differs")
    images = arrays["images"]
    n, size = images.shape[0], config["size"]
    if images.dtype != np.uint8 or images.shape != (n, 1, size, size):
        raise ValueError(f"images have shape {images.shape} and dtype {images.dtype}")

    def unpack(key: str) -> torch.Tensor:
        bits = np.unpackbits(arrays[key], axis=-1, count=size).astype(bool)
        return torch.from_numpy(bits.reshape(n, 1, size, size))

    labels, patients = arrays["labels"], arrays["patient_ids"]
    if labels.shape != (n,) or patients.shape != (n,):
        raise ValueError("labels or patient ids do not match the images")
    patient_ids = torch.from_numpy(patients.astype(np.int64))
    return ImageSet(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        lesion_masks=unpack("lesion_masks"),
        lung_masks=unpack("lung_masks"),
        artifact_masks={name: unpack(f"artifact__{name}") for name in config["shortcuts"]},
        patient_ids=patient_ids,
        name=f"synth-cxr/{config['split']}",
        config=config,
        finding_names=FINDING_NAMES,
        metadata=patient_metadata(config, patient_ids),
    )


def patient_metadata(config: dict, patient_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """``age`` and ``sex`` of each image's patient, from the demographics stream of the seed.

    Drawn apart from every pixel stream (and recomputed rather than cached), so the images,
    labels, masks and cache files are the same as before metadata existed.
    """
    n_total = config["n_patients"] + n_decorrelated_patients(config["n_patients"])
    world_seed, _, id_offset = calibration_world(config["split"], config["seed"])
    return per_image(sample_demographics(n_total, demographics_rng(world_seed)), patient_ids - id_offset)
