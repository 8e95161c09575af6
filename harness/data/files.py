"""Shared helpers of the real-dataset loaders: find files, read csvs strictly, decode and resize images.

Every error names the dataset, the file, and (where it applies) the line and column, and says what
was expected, so a wrongly unpacked download is fixed without reading the loader's code.
"""

from __future__ import annotations

import csv
import gzip
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from harness.data.cache import cached_split, config_hash
from harness.data.imageset import ImageSet

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")


def dataset_root(root: str | Path | None, dataset: str) -> Path:
    """``root`` as an existing folder, else a ``FileNotFoundError`` saying what the folder should hold."""
    if root is None:
        raise ValueError(f"{dataset}: pass root=<folder holding the dataset's files>")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset}: root folder {path} does not exist")
    return path


def find_file(root: Path, names: Sequence[str], dataset: str, what: str, hint: str = "") -> Path:
    """The first of ``names`` (also tried with ``.gz``) that exists in ``root``.

    Raises:
        FileNotFoundError: none exists; the message lists the names tried, what the file holds and
            ``hint`` (a way around it).
    """
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    tried = ", ".join(names)
    raise FileNotFoundError(f"{dataset}: {what} not found in {root}; expected a file named {tried}{hint}")


def read_csv(path: Path, required: Sequence[str], dataset: str) -> list[tuple[int, dict[str, str]]]:
    """Rows of a csv (optionally gzipped) as ``(line number, {column: value})``.

    Header names are stripped of surrounding spaces (SIIM's header is ``ImageId, EncodedPixels``).

    Raises:
        ValueError: a column of ``required`` is missing (the message lists the columns found).
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(
                f"{dataset}: {path.name} lacks column(s) {missing}; expected columns {list(required)}, "
                f"found {header}"
            )
        return [(reader.line_num, dict(zip(header, (v.strip() for v in row)))) for row in reader if row]


def read_lines(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file, optionally gzipped (the NIH split lists)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [line.strip() for line in handle if line.strip()]


def index_images(root: Path, suffixes: Iterable[str] = IMAGE_SUFFIXES + DICOM_SUFFIXES) -> dict[str, Path]:
    """File name -> path of every image below ``root`` (also by stem, for ids without a suffix)."""
    wanted = tuple(suffixes)
    index: dict[str, Path] = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.lower().endswith(wanted):
                path = Path(folder) / name
                index.setdefault(name, path)
                stem = Path(name).stem
                if stem not in index or index[stem].suffix.lower() in DICOM_SUFFIXES:
                    index[stem] = path  # a PNG/JPG beats a DICOM of the same id
    return index


def locate_images(index: dict[str, Path], keys: Sequence[str], root: Path, dataset: str) -> list[Path]:
    """Paths of ``keys`` in ``index``; raises ``FileNotFoundError`` listing the first missing ones."""
    missing = [k for k in keys if k not in index]
    if missing:
        shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
        raise FileNotFoundError(f"{dataset}: {len(missing)} image(s) listed in the csv are not below {root}: {shown}")
    return [index[k] for k in keys]


def load_gray(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """One image as grayscale uint8 ``[size, size]`` and its original ``(width, height)``.

    RGB(A) is converted with ITU-R 601 luma (PIL's ``"L"``); 16-bit images are scaled by their own
    min and max; shrinking averages pixels (box filter), enlarging is bilinear. The image is
    resized to a square, without cropping (box coordinates scale per axis accordingly).
    """
    if path.suffix.lower() in DICOM_SUFFIXES:
        pixels = _read_dicom(path)
    else:
        from PIL import Image

        with Image.open(path) as image:
            image.load()
            pixels = _to_uint8(image)
    original = (pixels.shape[1], pixels.shape[0])
    return resize_gray(pixels, size), original


def resize_gray(pixels: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[H, W]`` -> uint8 ``[size, size]`` (box filter when shrinking, bilinear when enlarging)."""
    from PIL import Image

    image = Image.fromarray(pixels, mode="L")
    shrinking = pixels.shape[0] >= size and pixels.shape[1] >= size
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(image.resize((size, size), method), dtype=np.uint8)


def _to_uint8(image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _scale_to_uint8(np.asarray(image, dtype=np.float64))
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    return np.round(scaled * 255).astype(np.uint8)


def _read_dicom(path: Path) -> np.ndarray:
    try:
        import pydicom
    except ImportError:
        raise ImportError(
            f"reading the DICOM file {path} needs pydicom: pip install pydicom (or convert the images to PNG)"
        ) from None
    dataset = pydicom.dcmread(path)
    pixels = dataset.pixel_array.astype(np.float64)
    if getattr(dataset, "PhotometricInterpretation", "") == "MONOCHROME1":
        pixels = pixels.max() - pixels  # MONOCHROME1 stores air bright
    return _scale_to_uint8(pixels)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """bool ``[H, W]`` -> bool ``[size, size]`` by area coverage >= 0.5, keeping a non-empty mask
    non-empty (its best-covered pixel survives a downsampling that would erase a small lesion)."""
    coverage = F.interpolate(torch.from_numpy(mask).float()[None, None], size=(size, size), mode="area")[0, 0]
    out = coverage >= 0.5
    if mask.any() and not out.any():
        out.view(-1)[int(coverage.argmax())] = True
    return out.numpy()


def box_mask(boxes: Sequence[tuple[float, float, float, float]], original: tuple[int, int], size: int) -> np.ndarray:
    """bool ``[size, size]``: the union of ``(x, y, w, h)`` boxes given in original pixels.

    A pixel is inside when its centre is; a box too small to cover a pixel centre keeps the pixel
    holding its centre.
    """
    width, height = original
    mask = np.zeros((size, size), dtype=bool)
    centres = np.arange(size) + 0.5
    for x, y, w, h in boxes:
        x0, x1 = x * size / width, (x + w) * size / width
        y0, y1 = y * size / height, (y + h) * size / height
        cols = (centres >= x0) & (centres < x1)
        rows = (centres >= y0) & (centres < y1)
        if not cols.any():
            cols[min(size - 1, max(0, int((x0 + x1) / 2)))] = True
        if not rows.any():
            rows[min(size - 1, max(0, int((y0 + y1) / 2)))] = True
        mask |= rows[:, None] & cols[None, :]
    return mask


def load_images(paths: Sequence[Path], size: int, dataset: str) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """uint8 ``[N,1,size,size]`` of ``paths`` and each original ``(width, height)``."""
    images = np.zeros((len(paths), 1, size, size), dtype=np.uint8)
    originals = []
    for i, path in enumerate(paths):
        try:
            images[i, 0], original = load_gray(path, size)
        except ImportError:
            raise
        except Exception as error:  # noqa: BLE001  (name the file whatever PIL raised)
            raise ValueError(f"{dataset}: cannot read image {path} ({type(error).__name__}: {error})") from error
        originals.append(original)
        if (i + 1) % 5000 == 0:
            log.info("%s: read %d of %d images", dataset, i + 1, len(paths))
    return torch.from_numpy(images), originals


def seeded_subset(n: int, max_images: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_images`` of ``n`` rows, drawn without replacement (all if None)."""
    if max_images is None or max_images >= n:
        return np.arange(n)
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    return np.sort(np.random.default_rng(seed).choice(n, size=max_images, replace=False))


def cached(config: dict, fingerprint: str, build: Callable[[], ImageSet], cache_dir: str | Path | None) -> ImageSet:
    """Load the ImageSet of ``config`` from the dataset cache, else build and store it.

    Args:
        config: the loader's JSON-serialisable options (root, split, size, ...).
        fingerprint: digest of the source files (csv content, image names and sizes), so a changed
            download is re-read.
        build: reads the files.
        cache_dir: see :func:`harness.data.cache.data_cache_dir`.
    """
    from harness.data.store import imageset_from_arrays, imageset_to_arrays

    key = {**config, "source_fingerprint": fingerprint}
    return cached_split(config["dataset"], key, build, imageset_to_arrays,
                        lambda arrays, _: imageset_from_arrays(arrays, config), cache_dir)


def files_fingerprint(files: Sequence[Path], paths: Sequence[Path]) -> str:
    """Digest of whole ``files`` (label csvs) plus the names, sizes and mtimes of ``paths`` (images)."""
    from harness.data.cache import file_sha256

    parts = [file_sha256(f) for f in files]
    parts += [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths]
    return config_hash({"parts": parts})
