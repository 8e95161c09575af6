"""The random 'world' behind synth-histo: slides, sites, patches, tumour clusters, nuclei and pen marks.

Everything here is metadata (numbers per slide, patch or nucleus slot) in a resolution-free frame
(x, y in [-1, 1] across the patch), drawn from independent named streams of one seed, so the same
``seed`` renders the same patches at any ``size`` and with any ``shortcuts`` config (a pen mark
added or removed changes nothing else: the counterfactual renders of the shortcut checks).
Slides play the part of patients: every patch of a slide lands in the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.data.shortcuts import DECORRELATED_RATE
from harness.data.splits import n_decorrelated_patients, patient_splits

_STREAMS = {"split": 1, "slide": 2, "patch": 3, "label": 4, "tumour": 5, "artifact": 6, "nuclei": 7}
PATCHES_PER_SLIDE = (3, 10)  # inclusive range; mean 6.5 patches per slide
N_SITES = 4
EDGE_P = 0.35  # share of patches at the tissue border (a background region beyond a wavy edge)
LYMPHOID_P = 0.30  # dense aggregates of small lymphocytes, in both classes (the tumour's look-alike)
# Nucleus slots per patch (each kept or not; positions in the [-1,1] frame).
N_NORMAL, N_LYMPH, N_TUMOUR = 80, 48, 56
# Difficulty knobs (see the calibration note in synth_histo.py): tumour nuclei radius, their number
# and how much darker they stain than normal nuclei. Normal nuclei: radius 0.055-0.085.
TUMOUR_RADIUS = (0.075, 0.115)
TUMOUR_FILL = (0.40, 0.80)  # share of a cluster's nucleus slots that are kept
TUMOUR_HYPERCHROMASIA = (0.95, 1.25)
CLUSTER_RADIUS = (0.32, 0.58)  # the tumour cluster in the [-1,1] frame: 5-40% of a patch (seed 003 asks >= 5%)
ARTIFACTS = ("pen_mark",)


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent, explicitly seeded generator for one named part of the world."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 3, _STREAMS[name]]))


@dataclass
class HistoWorld:
    """Per-slide, per-patch and per-nucleus-slot metadata of every split.

    Attributes:
        split_slides: split -> slide ids.
        patch_slide: int64 ``[N]`` slide of every patch (patches sorted by slide).
        labels: int64 ``[N]``: 1 = a tumour cluster lies in the patch.
        slide: slide factors (``site`` and stain jitter; arrays over slides).
        patch: patch factors (tissue edge, cellularity, lymphoid aggregate, tumour cluster, blur, noise).
        nuclei: slot kind -> float ``[N, slots, 6]`` (x, y, radius, elongation, angle, keep-uniform).
        artifact_uniforms: artifact -> float ``[N]`` (presence = uniform < probability).
        pen: pen-mark geometry per patch (drawn whether present or not).
    """

    split_slides: dict[str, np.ndarray]
    patch_slide: np.ndarray
    labels: np.ndarray
    slide: dict[str, np.ndarray]
    patch: dict[str, np.ndarray]
    nuclei: dict[str, np.ndarray]
    artifact_uniforms: dict[str, np.ndarray]
    pen: dict[str, np.ndarray]

    def split_patches(self, split: str) -> np.ndarray:
        """int64 indices of the patches of ``split``, in slide order."""
        return np.flatnonzero(np.isin(self.patch_slide, self.split_slides[split]))

    def presence(self, split: str, rows: np.ndarray, shortcuts: dict[str, dict[str, float]]) -> dict[str, np.ndarray]:
        """artifact -> bool ``[len(rows)]`` for the configured artifacts (rate 0.5 on decorrelated splits)."""
        out = {}
        for name, probs in shortcuts.items():
            uniforms = self.artifact_uniforms[name][rows]
            if split == "test_decorrelated":
                out[name] = uniforms < DECORRELATED_RATE
            else:
                out[name] = uniforms < np.where(self.labels[rows] == 1, probs["p_pos"], probs["p_neg"])
        return out


def build_histo_world(seed: int, n_slides: int, prevalence: float) -> HistoWorld:
    """Draw the metadata of all slides (train/val/test plus the decorrelated test slides)."""
    rng = stream(seed, "split")
    n_total = n_slides + n_decorrelated_patients(n_slides)
    counts = rng.integers(PATCHES_PER_SLIDE[0], PATCHES_PER_SLIDE[1] + 1, n_total)
    split_slides = patient_splits(n_slides, rng)
    patch_slide = np.repeat(np.arange(n_total, dtype=np.int64), counts)
    n = patch_slide.size
    labels = (stream(seed, "label").random(n) < prevalence).astype(np.int64)
    artifact = stream(seed, "artifact")
    return HistoWorld(
        split_slides=split_slides,
        patch_slide=patch_slide,
        labels=labels,
        slide=_slide_factors(n_total, stream(seed, "slide")),
        patch=_patch_factors(n, stream(seed, "patch"), stream(seed, "tumour")),
        nuclei=_nucleus_slots(n, stream(seed, "nuclei")),
        artifact_uniforms={name: artifact.random(n) for name in ARTIFACTS},
        pen=_pen_factors(n, artifact),
    )


def _slide_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Site (lab and scanner) of each slide and the slide's own stain jitter around its site."""
    return {
        "site": rng.integers(0, N_SITES, n),
        "h_scale": rng.uniform(0.85, 1.15, n),  # haematoxylin uptake of this slide
        "e_scale": rng.uniform(0.80, 1.20, n),  # eosin uptake
        "hue_jitter": rng.uniform(-0.06, 0.06, n),
    }


def _patch_factors(n: int, rng: np.random.Generator, tumour: np.random.Generator) -> dict[str, np.ndarray]:
    """Tissue edge, cellularity, lymphoid aggregate, tumour cluster geometry, blur and noise of each patch."""
    edge = rng.random(n) < EDGE_P
    out = {
        "edge": edge.astype(np.float64),
        "edge_angle": rng.uniform(0, 2 * np.pi, n),
        "edge_offset": np.where(edge, rng.uniform(0.25, 0.80, n), 10.0),  # signed distance of the edge from centre
        "edge_amp1": rng.uniform(0.03, 0.10, n), "edge_freq1": rng.uniform(2.0, 4.0, n),
        "edge_phase1": rng.uniform(0, 2 * np.pi, n),
        "edge_amp2": rng.uniform(0.01, 0.05, n), "edge_freq2": rng.uniform(5.0, 9.0, n),
        "edge_phase2": rng.uniform(0, 2 * np.pi, n),
        "cellularity": rng.uniform(0.30, 0.85, n),  # share of the normal nucleus slots kept
        "lymphoid": (rng.random(n) < LYMPHOID_P).astype(np.float64),
        "lymph_x": rng.uniform(-0.5, 0.5, n), "lymph_y": rng.uniform(-0.5, 0.5, n),
        "lymph_r": rng.uniform(0.25, 0.45, n),
        "blur": rng.uniform(0.3, 0.8, n),  # Gaussian sigma, pixels at the 96 px render
        "noise": rng.uniform(0.006, 0.018, n),
        "stroma_contrast": rng.uniform(0.15, 0.35, n),
    }
    out.update({
        "tumour_x": tumour.uniform(-0.45, 0.45, n), "tumour_y": tumour.uniform(-0.45, 0.45, n),
        "tumour_r": tumour.uniform(*CLUSTER_RADIUS, n),
        "tumour_a2": tumour.uniform(0.0, 0.18, n), "tumour_p2": tumour.uniform(0, 2 * np.pi, n),
        "tumour_a3": tumour.uniform(0.0, 0.12, n), "tumour_p3": tumour.uniform(0, 2 * np.pi, n),
        "tumour_fill": tumour.uniform(*TUMOUR_FILL, n),
        "tumour_dark": tumour.uniform(*TUMOUR_HYPERCHROMASIA, n),
    })
    return out


def _nucleus_slots(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Candidate nuclei per patch: ``[N, slots, 6]`` = x, y, radius, elongation, angle, keep-uniform.

    Normal slots are spread over the patch; lymphocyte and tumour slots lie in the unit disc, to be
    scaled onto the aggregate and the cluster.
    """
    def slots(count: int, radius: tuple[float, float], elongation: tuple[float, float], in_disc: bool) -> np.ndarray:
        if in_disc:
            rho, phi = np.sqrt(rng.random((n, count))), rng.uniform(0, 2 * np.pi, (n, count))
            x, y = rho * np.cos(phi), rho * np.sin(phi)
        else:
            x, y = rng.uniform(-1.1, 1.1, (n, count)), rng.uniform(-1.1, 1.1, (n, count))
        return np.stack([x, y, rng.uniform(*radius, (n, count)), rng.uniform(*elongation, (n, count)),
                         rng.uniform(0, np.pi, (n, count)), rng.random((n, count))], -1)

    return {
        "normal": slots(N_NORMAL, (0.055, 0.085), (1.0, 2.2), False),
        "lymph": slots(N_LYMPH, (0.045, 0.060), (1.0, 1.2), True),
        "tumour": slots(N_TUMOUR, TUMOUR_RADIUS, (1.0, 1.6), True),
    }


def _pen_factors(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A marker stroke across the patch: a quadratic Bezier from one side to another (pathologists
    circle tumour on the glass; the stroke crosses the patch where the circle passes)."""
    angle = rng.uniform(0, 2 * np.pi, n)
    start = np.stack([np.cos(angle), np.sin(angle)], -1) * 1.15
    end_angle = angle + np.pi + rng.uniform(-1.0, 1.0, n)
    end = np.stack([np.cos(end_angle), np.sin(end_angle)], -1) * 1.15
    bend = rng.uniform(-0.6, 0.6, (n, 2))
    return {
        "p0x": start[:, 0], "p0y": start[:, 1],
        "p1x": (start[:, 0] + end[:, 0]) / 2 + bend[:, 0], "p1y": (start[:, 1] + end[:, 1]) / 2 + bend[:, 1],
        "p2x": end[:, 0], "p2y": end[:, 1],
        "width": rng.uniform(4.0, 7.0, n),  # pixels at 64 px
        "ink": rng.integers(0, 3, n).astype(np.float64),  # green, blue, black
        "opacity": rng.uniform(0.55, 0.85, n),
    }
