"""Bank of real pneumothorax shapes (SIIM-ACR annotations) and their placement in phantom lungs.

The SIIM-ACR training csv shipped inside the ``torchxrayvision`` wheel holds 2,669 positive images
(3,576 annotation rows; 624 images have several rows, OR-merged here). Each positive image is
decoded once into a ``RESOLUTION x RESOLUTION`` coverage map of the full 1024x1024 frame, so the
relative position of the lesion in the chest is kept. The bank is cached as an ``.npz`` keyed by the
csv's sha256 and loaded without pickle.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.cache import data_cache_dir, file_sha256, load_arrays, save_arrays
from harness.data.rle import NO_FINDING, SIIM_SIZE, rle_block_coverage

log = logging.getLogger(__name__)

SIIM_CSV_NAME = "siim-pneumothorax-train-rle.csv.gz"
RESOLUTION = 128
BANK_VERSION = 1
# Where the lung fields lie in a full-frame 1024x1024 SIIM radiograph, as fractions of the frame
# (x0, x1, y0, y1): the median union bounding box of the 435 usable lung masks of
# torchxrayvision's ``semantic_masks_v7labs_lungs.zip`` (measured once; the SIIM csv has no lungs).
CANONICAL_LUNG_BOX = (0.074, 0.924, 0.098, 0.848)
FLOOD_RESOLUTION = 112  # extend_to_pleura works on a grid of at most about this many pixels
MIN_LESION_PIXELS_64 = 4  # a placed lesion smaller than this (at 64x64, scaled with area) is redrawn


@dataclass(frozen=True)
class LesionBank:
    """Real lesion shapes as coverage maps of the whole radiograph frame.

    Attributes:
        coverage: uint8 ``[N, R, R]``; 255 = the block is fully inside the annotated pneumothorax.
        image_ids: str ``[N]``; the SIIM ``ImageId`` of each lesion.
        source_sha256: sha256 of the csv the bank was decoded from.
    """

    coverage: np.ndarray
    image_ids: np.ndarray
    source_sha256: str

    def __len__(self) -> int:
        return int(self.coverage.shape[0])

    def area_fraction(self) -> np.ndarray:
        """float ``[N]``: lesion area as a fraction of the frame."""
        return self.coverage.reshape(len(self), -1).sum(1, dtype=np.float64) / (255.0 * RESOLUTION**2)


def siim_csv_path() -> Path:
    """Path of the SIIM-ACR RLE csv inside the installed torchxrayvision package (not imported)."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("torchxrayvision is not installed; it ships the SIIM-ACR masks")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / SIIM_CSV_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in the torchxrayvision package")
    return path


def read_siim_rles(csv_path: str | Path) -> "OrderedDict[str, list[str]]":
    """Group the RLE rows of the SIIM csv by image, keeping positives only, in file order.

    Args:
        csv_path: the (optionally gzipped) csv with columns ``ImageId`` and `` EncodedPixels``.

    Returns:
        ImageId -> list of RLE strings (several rows of one image are kept for OR-merging).
    """
    opener = gzip.open if str(csv_path).endswith(".gz") else open
    groups: OrderedDict[str, list[str]] = OrderedDict()
    with opener(csv_path, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        for row in reader:
            rle = row["EncodedPixels"].strip()
            if rle != NO_FINDING:
                groups.setdefault(row["ImageId"].strip(), []).append(rle)
    return groups


def build_lesion_bank(csv_path: str | Path, resolution: int = RESOLUTION) -> LesionBank:
    """Decode every positive image of the csv (rows OR-merged) into a coverage map.

    Args:
        csv_path: the SIIM-ACR RLE csv.
        resolution: edge of the coverage maps; must divide 1024.

    Returns:
        The bank, lesions in csv order.
    """
    factor = SIIM_SIZE // resolution
    groups = read_siim_rles(csv_path)
    coverage = np.zeros((len(groups), resolution, resolution), dtype=np.uint8)
    for i, rles in enumerate(groups.values()):
        counts = rle_block_coverage(rles, (SIIM_SIZE, SIIM_SIZE), factor)
        coverage[i] = np.rint(counts * (255.0 / factor**2)).astype(np.uint8)
    ids = np.array(list(groups.keys()), dtype=np.str_)
    return LesionBank(coverage=coverage, image_ids=ids, source_sha256=file_sha256(csv_path))


def load_lesion_bank(cache_dir: str | Path | None = None, csv_path: str | Path | None = None) -> LesionBank:
    """The lesion bank, decoded on first use and cached on disk under the csv's sha256.

    Args:
        cache_dir: data cache folder (see :func:`harness.data.cache.data_cache_dir`).
        csv_path: the SIIM csv; default: the copy inside torchxrayvision.

    Returns:
        The bank. A corrupted cache file is rebuilt with a warning.
    """
    csv_path = Path(csv_path) if csv_path is not None else siim_csv_path()
    digest = file_sha256(csv_path)
    path = data_cache_dir(cache_dir) / f"lesion-bank-v{BANK_VERSION}-r{RESOLUTION}-{digest[:20]}.npz"
    arrays = load_arrays(path)
    if arrays is not None and _valid_bank(arrays, digest):
        return LesionBank(arrays["coverage"], arrays["image_ids"], digest)
    if arrays is not None:
        log.warning("lesion bank cache %s does not match its key; rebuilding", path)
    bank = build_lesion_bank(csv_path)
    save_arrays(path, {"coverage": bank.coverage, "image_ids": bank.image_ids, "sha256": np.str_(digest)})
    return bank


def _valid_bank(arrays: dict[str, np.ndarray], digest: str) -> bool:
    needed = {"coverage", "image_ids", "sha256"}
    return (
        needed <= arrays.keys()
        and str(arrays["sha256"]) == digest
        and arrays["coverage"].dtype == np.uint8
        and arrays["coverage"].ndim == 3
        and arrays["coverage"].shape[0] == arrays["image_ids"].shape[0]
    )


def lung_boxes(lung_mask: torch.Tensor) -> torch.Tensor:
    """Bounding boxes of the lung fields in ``grid_sample`` coordinates.

    Args:
        lung_mask: bool ``[B,1,H,W]``; every image needs a non-empty lung mask.

    Returns:
        float ``[B,4]``: ``(x0, x1, y0, y1)`` of the outer pixel edges, in [-1, 1].
    """
    height, width = lung_mask.shape[-2:]
    cols = lung_mask.any(dim=-2).flatten(1)  # [B,W]
    rows = lung_mask.any(dim=-1).flatten(1)  # [B,H]
    ar_w = torch.arange(width, device=lung_mask.device)
    ar_h = torch.arange(height, device=lung_mask.device)
    x0 = torch.where(cols, ar_w, width).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1) + 1
    y0 = torch.where(rows, ar_h, height).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1) + 1
    edges = [2 * x0 / width - 1, 2 * x1 / width - 1, 2 * y0 / height - 1, 2 * y1 / height - 1]
    return torch.stack(edges, 1).float()


def place_lesions(coverage: torch.Tensor, lung_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Map whole-frame lesion coverage maps into the phantoms' lung fields.

    The SIIM frame's canonical lung box is mapped affinely onto each phantom's lung bounding box,
    so a lesion keeps its position relative to the chest (apex, lateral wall, side); the result is
    intersected with the lung mask, so the lesion lies in the pleural space of the lung field.

    Args:
        coverage: float ``[B,1,R,R]`` in [0,1], whole-frame lesion coverage.
        lung_mask: bool ``[B,1,H,W]``.

    Returns:
        ``(mask, soft)``: bool ``[B,1,H,W]`` lesion mask (inside the lungs) and its float coverage
        ``[B,1,H,W]`` (also zero outside the lungs), for anti-aliased rendering.
    """
    batch, _, height, width = lung_mask.shape
    box = lung_boxes(lung_mask)
    cx0, cx1, cy0, cy1 = (2 * v - 1 for v in CANONICAL_LUNG_BOX)
    xs = (2 * torch.arange(width, device=lung_mask.device) + 1) / width - 1
    ys = (2 * torch.arange(height, device=lung_mask.device) + 1) / height - 1
    rel_x = (xs[None, :] - box[:, 0:1]) / (box[:, 1:2] - box[:, 0:1]).clamp_min(1e-6)  # [B,W]
    rel_y = (ys[None, :] - box[:, 2:3]) / (box[:, 3:4] - box[:, 2:3]).clamp_min(1e-6)  # [B,H]
    gx = (cx0 + rel_x * (cx1 - cx0))[:, None, :].expand(batch, height, width)
    gy = (cy0 + rel_y * (cy1 - cy0))[:, :, None].expand(batch, height, width)
    grid = torch.stack([gx, gy], dim=-1)
    soft = F.grid_sample(coverage, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    soft = soft * lung_mask
    return soft > 0.5, soft


def extend_to_pleura(
    mask: torch.Tensor, lung_mask: torch.Tensor, wall_depth: torch.Tensor, steps: int
) -> torch.Tensor:
    """Grow each lesion outwards until it reaches the chest wall.

    A pneumothorax is air between the chest wall and the collapsed lung, so it touches the lung
    field's lateral or apical edge. The real annotation is placed by its position in the frame, not
    by the phantom's exact lung outline; this step keeps the annotation's inner contour (the
    visceral pleural line) and fills the gap between it and the wall: a lung pixel joins when a
    lesion neighbour lies at least one pixel deeper (growth only ever moves outwards, in a 45
    degree cone). A closing then removes slits left between grown parts.

    Args:
        mask: bool ``[B,1,H,W]`` lesion inside ``lung_mask``.
        lung_mask: bool ``[B,1,H,W]``.
        wall_depth: float ``[B,1,H,W]`` distance in pixels to the chest-wall part of the outline.
        steps: maximum growth in pixels.

    Returns:
        bool ``[B,1,H,W]``, a superset of ``mask`` inside ``lung_mask``.
    """
    size = mask.shape[-1]
    factor = max(1, size // FLOOD_RESOLUTION)  # flood on a coarser grid above FLOOD_RESOLUTION px
    if factor > 1:
        coarse_lung = F.avg_pool2d(lung_mask.float(), factor) > 0.5
        coarse_depth = F.avg_pool2d(wall_depth, factor) / factor
        coarse_seed = F.max_pool2d(mask.float(), factor) > 0.5
        coarse = _flood(coarse_seed, coarse_lung, coarse_depth, steps // factor + 1)
        grown = F.interpolate(coarse.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False) > 0.5
        region = (grown | mask) & lung_mask
    else:
        region = _flood(mask & lung_mask, lung_mask, wall_depth, steps)
    radius = max(1, round(size / 112))
    closed = -F.max_pool2d(-F.max_pool2d(region.float(), 2 * radius + 1, 1, radius), 2 * radius + 1, 1, radius)
    return (closed > 0.5) & lung_mask


def _flood(seed: torch.Tensor, lung_mask: torch.Tensor, wall_depth: torch.Tensor, steps: int) -> torch.Tensor:
    """Grow ``seed`` into lung pixels that have a seed neighbour at least one pixel deeper."""
    depth = torch.floor(wall_depth.clamp(min=0)) * lung_mask
    region = seed & lung_mask
    for _ in range(steps):
        deepest_neighbour = F.max_pool2d(region.float() * (depth + 1), 3, 1, 1) - 1
        grown = region | (lung_mask & (deepest_neighbour > depth))
        if torch.equal(grown, region):
            break
        region = grown
    return region


def pneumothorax_appearance(
    soft: torch.Tensor, lung_soft: torch.Tensor, lucency: torch.Tensor, line: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """How a placed pneumothorax changes the radiograph.

    Inside the lesion the lung parenchyma is gone (no vessel markings, no texture) and the pleural
    air adds lucency; where the lesion meets the remaining lung a thin bright visceral pleural line
    marks the collapsed lung's edge, with a faint denser rim of collapsed lung behind it. The chest
    wall side gets no line (it lies outside the lung mask).

    Args:
        soft: float ``[B,1,H,W]`` lesion coverage from :func:`place_lesions`.
        lung_soft: float ``[B,1,H,W]`` lung coverage.
        lucency: float ``[B,1,1,1]`` darkening inside the lesion.
        line: float ``[B,1,1,1]`` brightness of the pleural line.

    Returns:
        ``(keep, delta)``: multiply the parenchyma by ``keep`` and add ``delta`` to the intensity.
    """
    size = soft.shape[-1]
    line_radius = max(1, round(size / 112))  # 1 px at 64, 2 px at 224
    edge = (F.max_pool2d(soft, 2 * line_radius + 1, 1, line_radius) - soft).clamp(min=0) * lung_soft
    rim_radius = 3 * line_radius
    rim = (F.max_pool2d(soft, 2 * rim_radius + 1, 1, rim_radius) - soft).clamp(min=0) * lung_soft - edge
    delta = -lucency * soft + line * edge + 0.25 * line * rim.clamp(min=0)
    return 1 - soft, delta


def render_pneumothorax(
    bank: LesionBank,
    choice: np.ndarray,
    lung_mask: torch.Tensor,
    lung_soft: torch.Tensor,
    wall_depth: torch.Tensor,
    lucency: torch.Tensor,
    line: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Place, grow and render one real pneumothorax shape in each of ``P`` phantom chests.

    Args:
        bank: the lesion bank.
        choice: float ``[P, C]`` uniforms choosing bank candidates, tried in order (see :func:`fit_lesions`).
        lung_mask: bool ``[P,1,H,W]``; lung_soft: float ``[P,1,H,W]``; wall_depth: float ``[P,1,H,W]``
            (see :class:`harness.data.phantom.Anatomy`).
        lucency: float ``[P,1,1,1]`` darkening inside the lesion.
        line: float ``[P,1,1,1]`` brightness of the visceral pleural line.

    Returns:
        ``(mask, keep, delta)``: bool ``[P,1,H,W]`` lesion mask inside the lungs, the factor that
        multiplies the parenchyma and the intensity change (see :func:`pneumothorax_appearance`).
    """
    size = lung_mask.shape[-1]
    soft = fit_lesions(bank, choice, lung_mask)
    grown = extend_to_pleura(soft > 0.5, lung_mask, wall_depth, steps=int(0.16 * size) + 1)
    soft = torch.maximum(soft, grown.float()) * lung_soft
    keep, delta = pneumothorax_appearance(soft, lung_soft, lucency, line)
    return (soft > 0.5) & lung_mask, keep, delta


def fit_lesions(bank: LesionBank, choice: np.ndarray, lung_mask: torch.Tensor) -> torch.Tensor:
    """Place bank lesions into the lungs, trying the next candidate while one lands too small.

    Args:
        bank: the lesion bank.
        choice: float ``[P, K]`` uniforms choosing candidates in order.
        lung_mask: bool ``[P,1,H,W]``.

    Returns:
        float ``[P,1,H,W]`` lesion coverage; its ``> 0.5`` part is non-empty for every row (the
        largest candidate is kept if none reaches the minimum size).
    """
    size = lung_mask.shape[-1]
    min_pixels = max(1, round(MIN_LESION_PIXELS_64 * (size / 64) ** 2))
    best = torch.zeros(lung_mask.shape, dtype=torch.float32)
    best_area = torch.full((lung_mask.shape[0],), -1)
    todo = torch.ones(lung_mask.shape[0], dtype=torch.bool)
    for k in range(choice.shape[1]):
        rows = torch.nonzero(todo).flatten()
        if rows.numel() == 0:
            break
        index = np.minimum((choice[rows.numpy(), k] * len(bank)).astype(np.int64), len(bank) - 1)
        mask, soft = place_lesions(bank_coverage(bank, index, size), lung_mask[rows])
        area = mask.flatten(1).sum(1)
        better = area > best_area[rows]
        best[rows[better]], best_area[rows[better]] = soft[better], area[better]
        todo[rows[area >= min_pixels]] = False
    return best


def bank_coverage(bank: LesionBank, index: np.ndarray, size: int) -> torch.Tensor:
    """Coverage maps ``[P,1,R',R']`` in [0,1], area-pooled when much finer than the output."""
    coverage = torch.from_numpy(bank.coverage[index]).float().div_(255.0)[:, None]
    factor = 1
    while coverage.shape[-1] // (2 * factor) >= size:
        factor *= 2
    return F.avg_pool2d(coverage, factor) if factor > 1 else coverage
