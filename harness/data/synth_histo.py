"""synth-histo: deterministic synthetic H&E lymph-node patches with tumour masks and a pen-mark shortcut.

The embedded stand-in for CAMELYON16 / PatchCamelyon (seed 003, VisTumor). Each patch is rendered
in RGB at PCam's 96 px (:mod:`harness.data.histo_render`: Beer-Lambert stains, pink eosin stroma,
purple haematoxylin nuclei, stain and scanner variation per site, per-slide jitter) and stored as
grey (ITU-R 601 luma, as the PCam loader converts PCam, because every architecture here takes one
channel), resized to ``size``. A positive patch holds a lobulated tumour cluster: larger, darker,
more variable nuclei, densely packed, with paler cytoplasm; ``lesion_masks`` are its pixels
(inside the tissue), ``lung_masks`` (the anatomy slot) the tissue. Look-alikes in both classes:
dense lymphoid aggregates of small dark nuclei, cellularity varying per patch, tissue borders.

Slides are the patients: 3-10 patches each, splits slide-wise (train/val/test 70/15/15,
``test_decorrelated`` of further slides, ``calib`` and ``calib_decorrelated`` from a second world
for thresholds). The shortcut ``pen_mark`` (a marker stroke, as pathologists draw around tumour
on the glass) carries its own mask and is rendered or removed without changing anything else.

``task="tissue"`` gives the same patches with other labels, for pretraining a backbone on a task
that is not the one judged (multi-hot ``lymphoid_aggregate``, ``tissue_edge``, ``hypercellular``;
tumour unlabelled): see the recipe ``histo_pretrain``.

Learnability (seed 0, 64 px, cpu profile, 2 shared cores): ResNet-18 pretrained on the ``tissue``
task (recipe ``histo_pretrain``, 5 epochs) validation macro AUROC 0.829; the linear probe on its
frozen backbone (``linear_probe``, 3 epochs) tumour AUROC 0.831 (seed 1: 0.839), in the range seed
003 reports (accuracy 81-86%). Difficulty knobs: ``TUMOUR_*`` and ``CLUSTER_RADIUS`` in
:mod:`harness.data.histo_world` (changing one changes the data: bump ``GENERATOR_VERSION``).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from harness.data import register_dataset
from harness.data.cache import cached_split
from harness.data.histo_render import kept_nuclei, pen_stroke, region_masks, render_patches
from harness.data.histo_world import ARTIFACTS, HistoWorld, build_histo_world
from harness.data.imageset import ImageSet
from harness.data.splits import CALIB_SPLITS, SPLITS, calibration_world, check_synthetic_options
from harness.data.store import imageset_from_arrays, imageset_to_arrays

log = logging.getLogger(__name__)

GENERATOR_VERSION = "synth-histo/1"
RENDER_CHUNK = 128  # patches rendered together; part of the version
_RENDER_STREAM = 303
TASKS = ("tumour", "tissue")
FINDINGS = {"tumour": ("tumour",), "tissue": ("lymphoid_aggregate", "tissue_edge", "hypercellular")}
HYPERCELLULAR = 0.6  # cellularity above which a patch counts as hypercellular (task "tissue")
DEFAULT_PEN_RATE = 0.2  # shortcuts=None: pen marks on 20% of patches in both classes (no shortcut)
_PROB_KEYS = ("p_pos", "p_neg")
CALIBRATION_AUROC = {"histo_pretrain (tissue task, macro)": 0.829, "linear_probe seed 0": 0.831,
                     "linear_probe seed 1": 0.839}  # see the module docstring


def normalise_histo_shortcuts(shortcuts: dict | None) -> dict[str, dict[str, float]]:
    """Validate ``{"pen_mark": {"p_pos": p1, "p_neg": p0}}``; ``None`` = pen marks at 0.2 in both classes,
    ``{}`` = none.

    Raises:
        ValueError: unknown artifact or key, probability outside [0, 1].
    """
    if shortcuts is None:
        return {"pen_mark": {"p_pos": DEFAULT_PEN_RATE, "p_neg": DEFAULT_PEN_RATE}}
    unknown = sorted(set(shortcuts) - set(ARTIFACTS))
    if unknown:
        raise ValueError(f"synth-histo: unknown shortcut(s) {unknown}; valid: {list(ARTIFACTS)}")
    out = {}
    for name, spec in shortcuts.items():
        if not isinstance(spec, dict) or set(spec) != set(_PROB_KEYS):
            raise ValueError(f"synth-histo: shortcut {name!r} needs exactly the keys {list(_PROB_KEYS)}, got {spec!r}")
        probs = {k: float(spec[k]) for k in _PROB_KEYS}
        if not all(0.0 <= v <= 1.0 for v in probs.values()):
            raise ValueError(f"synth-histo: shortcut {name!r} probabilities must lie in [0, 1], got {probs}")
        out[name] = probs
    return out


def make_config(split: str, *, size: int = 64, n_slides: int = 300, prevalence: float = 0.5,
                shortcuts: dict | None = None, task: str = "tumour", seed: int = 0) -> dict:
    """Validate the options of :func:`synth_histo` into its full, JSON-serialisable config."""
    size, n_slides, seed = check_synthetic_options(split, size, n_slides, seed, SPLITS + CALIB_SPLITS)
    if not 0.0 <= float(prevalence) <= 1.0:
        raise ValueError(f"synth-histo: prevalence must lie in [0, 1], got {prevalence}")
    if task not in TASKS:
        raise ValueError(f"synth-histo: unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return {"dataset": "synth-histo", "split": split, "size": size, "n_slides": n_slides,
            "prevalence": float(prevalence), "shortcuts": normalise_histo_shortcuts(shortcuts), "task": task,
            "seed": seed, "generator_version": GENERATOR_VERSION}


@register_dataset("synth-histo", category="synthetic",
                  description="synthetic H&E lymph-node patches (tumour masks, stain sites, pen-mark shortcut)")
def synth_histo(split: str, *, size: int = 64, n_slides: int = 300, prevalence: float = 0.5,
                shortcuts: dict | None = None, task: str = "tumour", seed: int = 0,
                cache_dir: str | None = None) -> ImageSet:
    """One split of the synthetic histopathology dataset, generated once and cached on disk.

    Args:
        split: ``"train"``, ``"val"``, ``"test"`` (70/15/15 of the slides), ``"test_decorrelated"``
            (further slides, pen marks at rate 0.5 in both classes), ``"calib"`` and
            ``"calib_decorrelated"`` (the same of a second world: thresholds are set there).
        size: output edge in pixels (64 cpu profile, 224 gpu profile; rendered at 96 and resized).
        n_slides: slides of train+val+test (the patients); 3-10 patches each (6.5 on average).
        prevalence: probability that a patch holds tumour.
        shortcuts: ``{"pen_mark": {"p_pos": p1, "p_neg": p0}}``; see :func:`normalise_histo_shortcuts`.
        task: ``"tumour"`` (binary, the judged task) or ``"tissue"`` (multi-hot pretraining labels).
        seed: seed of every random choice.
        cache_dir: cache folder (see :func:`harness.data.cache.data_cache_dir`).

    Returns:
        The split as an :class:`ImageSet` named ``synth-histo/<split>``.
    """
    config = make_config(split, size=size, n_slides=n_slides, prevalence=prevalence, shortcuts=shortcuts, task=task,
                         seed=seed)
    return cached_split("synth-histo", config, lambda: generate(config), imageset_to_arrays, from_arrays, cache_dir)


def generate(config: dict) -> ImageSet:
    """Render the split described by ``config`` (from :func:`make_config`), without the dataset cache."""
    started = time.perf_counter()
    world_seed, world_split, id_offset = calibration_world(config["split"], config["seed"])
    world = build_histo_world(world_seed, config["n_slides"], config["prevalence"])
    rows = world.split_patches(world_split)
    render = {**config, "seed": world_seed, "split": world_split}
    parts = [_render_chunk(world, rows[i:i + RENDER_CHUNK], render, chunk=i // RENDER_CHUNK)
             for i in range(0, rows.size, RENDER_CHUNK)]
    merged = {k: torch.cat([part[k] for part in parts]) for k in ("images", "tumour", "tissue", "lymphoid")}
    artifacts = {name: torch.cat([part["artifacts"][name] for part in parts]) for name in config["shortcuts"]}
    log.info("generated synth-histo/%s: %d patches in %.1fs", config["split"], rows.size, time.perf_counter() - started)
    labels, masks = _task_labels(config["task"], world, rows, merged)
    slides = torch.from_numpy(world.patch_slide[rows].copy()) + id_offset
    return ImageSet(images=merged["images"], labels=labels, lesion_masks=masks, lung_masks=merged["tissue"],
                    artifact_masks=artifacts, patient_ids=slides, name=f"synth-histo/{config['split']}",
                    config=config, finding_names=FINDINGS[config["task"]],
                    metadata={"site": torch.from_numpy(world.slide["site"][world.patch_slide[rows]].astype(np.int64))})


def _task_labels(task: str, world: HistoWorld, rows: np.ndarray, merged: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, lesion_masks)`` of the task: tumour (binary) or the three tissue findings (multi-hot)."""
    if task == "tumour":
        return torch.from_numpy(world.labels[rows].copy()), merged["tumour"]
    tissue = merged["tissue"]
    hyper = torch.from_numpy(world.patch["cellularity"][rows] > HYPERCELLULAR)
    edge = torch.from_numpy(world.patch["edge"][rows] > 0.5)
    lymph = merged["lymphoid"].flatten(1).any(1)
    labels = torch.stack([lymph, edge & ~tissue.flatten(1).all(1), hyper], 1).float()
    masks = torch.cat([merged["lymphoid"], ~tissue & edge.view(-1, 1, 1, 1), tissue & hyper.view(-1, 1, 1, 1)], 1)
    return labels, masks


def _render_chunk(world: HistoWorld, rows: np.ndarray, config: dict, chunk: int) -> dict:
    """Render the patches ``rows``: nuclei, stains, pen marks, grey, blur, resize, noise; masks at ``size``."""
    entropy = np.random.SeedSequence([config["seed"], _RENDER_STREAM, SPLITS.index(config["split"]), chunk])
    gen = torch.Generator().manual_seed(int(entropy.generate_state(1, dtype=np.uint64)[0] >> 1))
    size = config["size"]
    patch = {k: torch.from_numpy(v[rows]).float() for k, v in world.patch.items()}
    slide = {k: torch.from_numpy(v[world.patch_slide[rows]]).float() for k, v in world.slide.items()}
    pen = {k: torch.from_numpy(v[rows]).float() for k, v in world.pen.items()}
    labels = torch.from_numpy(world.labels[rows].copy())
    present = {k: torch.from_numpy(v) for k, v in world.presence(config["split"], rows, config["shortcuts"]).items()}
    pen_present = present.get("pen_mark", torch.zeros(rows.size, dtype=torch.bool))
    nuclei = kept_nuclei(patch, {k: v[rows] for k, v in world.nuclei.items()}, labels)
    x = render_patches(patch, slide, nuclei, pen, pen_present, labels, size, gen)
    masks = region_masks(patch, labels, size)
    artifacts = {}
    if "pen_mark" in present:
        artifacts["pen_mark"] = pen_stroke(pen, pen_present, size) >= 0.25
    return {"images": (x * 255).round().to(torch.uint8), **masks, "artifacts": artifacts}


def from_arrays(arrays: dict[str, np.ndarray], config: dict) -> ImageSet:
    """Rebuild a cached split, checking it was made from ``config`` and has the task's findings.

    Raises:
        ValueError: the stored config or findings differ, or an array breaks the ImageSet contract.
        KeyError: an array is missing.
    """
    data = imageset_from_arrays(arrays, config)
    if data.finding_names != FINDINGS[config["task"]] or set(data.artifact_masks) != set(config["shortcuts"]):
        raise ValueError(f"stored findings {data.finding_names} or artifacts {sorted(data.artifact_masks)} differ")
    return data
