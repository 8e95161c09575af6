"""Any ImageSet as plain numpy arrays (no pickle) and back, for the ``.npz`` dataset cache.

Masks are bit-packed along their last axis; an all-False broadcast mask (see
:func:`harness.data.imageset.empty_masks`) is stored as its channel count only; strings (config,
name, finding and image ids) are stored as fixed-width unicode arrays.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from harness.data.imageset import ImageSet, empty_masks


def imageset_to_arrays(data: ImageSet) -> dict[str, np.ndarray]:
    """``data`` as name -> array, ready for :func:`harness.data.cache.save_arrays`."""
    arrays = {
        "images": data.images.numpy(),
        "labels": data.labels.numpy(),
        "config": np.str_(json.dumps(data.config, sort_keys=True)),
        "name": np.str_(data.name),
        "finding_names": np.array(data.finding_names, dtype=np.str_),
    }
    if _is_broadcast(data.lesion_masks):
        arrays["lesion_channels"] = np.int64(data.lesion_masks.shape[1])
    else:
        arrays["lesion_masks"] = _pack(data.lesion_masks)
    if data.lung_masks is not None:
        arrays["lung_masks"] = _pack(data.lung_masks)
    if data.patient_ids is not None:
        arrays["patient_ids"] = data.patient_ids.numpy()
    if data.image_ids is not None:
        arrays["image_ids"] = np.array(data.image_ids, dtype=np.str_)
    arrays.update({f"artifact__{k}": _pack(v) for k, v in data.artifact_masks.items()})
    arrays.update({f"metadata__{k}": v.numpy() for k, v in data.metadata.items()})
    return arrays


def imageset_from_arrays(arrays: dict[str, np.ndarray], config: dict) -> ImageSet:
    """Rebuild an ImageSet from :func:`imageset_to_arrays` output, checking it was made from ``config``.

    Raises:
        ValueError: the stored config differs, or the arrays break the ImageSet contract.
        KeyError: a required array is missing.
    """
    if json.loads(str(arrays["config"])) != config:
        raise ValueError("stored config differs")
    images = torch.from_numpy(arrays["images"])
    n, _, height, width = images.shape
    unpack = lambda key: _unpack(arrays[key], height, width)  # noqa: E731
    if "lesion_masks" in arrays:
        lesion = unpack("lesion_masks")
    else:
        lesion = empty_masks(n, int(arrays["lesion_channels"]), (height, width))
    return ImageSet(
        images=images,
        labels=torch.from_numpy(arrays["labels"]),
        lesion_masks=lesion,
        lung_masks=unpack("lung_masks") if "lung_masks" in arrays else None,
        artifact_masks={k.split("__", 1)[1]: unpack(k) for k in arrays if k.startswith("artifact__")},
        patient_ids=torch.from_numpy(arrays["patient_ids"]) if "patient_ids" in arrays else None,
        name=str(arrays["name"]),
        config=config,
        finding_names=tuple(str(s) for s in arrays["finding_names"]),
        metadata={k.split("__", 1)[1]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("metadata__")},
        image_ids=tuple(str(s) for s in arrays["image_ids"]) if "image_ids" in arrays else None,
    )


def _is_broadcast(mask: torch.Tensor) -> bool:
    """True for an all-False view of a single element (every stride 0)."""
    return mask.numel() > 0 and all(s == 0 for s in mask.stride()) and not bool(mask[(0,) * mask.ndim])


def _pack(mask: torch.Tensor) -> np.ndarray:
    return np.packbits(mask.contiguous().numpy(), axis=-1)


def _unpack(bits: np.ndarray, height: int, width: int) -> torch.Tensor:
    unpacked = np.unpackbits(bits, axis=-1, count=width).astype(bool)
    if unpacked.shape[-2] != height:
        raise ValueError(f"mask rows {unpacked.shape[-2]} do not match image height {height}")
    return torch.from_numpy(unpacked)
