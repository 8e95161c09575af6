"""What identifies a training run: the configuration hash (entry, recipe, profile, data version) and versions."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from harness.models.checkpoint_files import file_sha256
from harness.models.recipes import Recipe, get_profile
from harness.models.zoo import ZooEntry

FORMAT_VERSION = 1


def config_hash(entry: ZooEntry, recipe: Recipe, profile: str) -> str:
    """First 8 hex digits of sha256 over everything that determines the weights.

    That includes the dataset's declared version (:func:`dataset_version`), so a new data
    generator retrains the models instead of reusing weights fitted to the old images, and for data
    read from disk the files' fingerprint (:func:`harness.data.dataset_fingerprint`).
    """
    from harness.data import dataset_fingerprint

    config = entry.config()
    if entry.pretrained:  # the file's content, not where it lies
        config["pretrained"] = {"sha256": pretrained_sha256(entry.pretrained)}
    payload = {
        "format": FORMAT_VERSION,
        "entry": config,
        "dataset_version": dataset_version(entry.dataset),
        "recipe": recipe.to_dict(),
        "profile": get_profile(profile).to_dict(),
    }
    base = entry.dataset_options.get("base")  # a wrapper dataset (shuffled-labels): its base's version too
    if isinstance(base, str):
        payload["base_dataset_version"] = dataset_version(base)
    try:  # data read from disk: the files themselves, not only where they lie
        files = dataset_fingerprint(entry.dataset, dict(entry.dataset_options))
    except (OSError, ValueError) as err:  # unreadable now: no stored run matches; training reports the error
        files = f"unreadable ({type(err).__name__})"
    if files is not None:
        payload["dataset_files"] = files
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:8]


def pretrained_sha256(path: str | Path) -> str:
    """sha256 of a pretrained weights file (cached by path, size and mtime); ``missing`` if absent."""
    path = Path(path).expanduser()
    try:
        stat = path.stat()
    except OSError:
        return "missing"
    return _cached_sha256(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _cached_sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(Path(path))


def dataset_version(name: str) -> str | None:
    """The version a registered dataset declares: ``register_dataset(name, version=...)`` metadata,
    else a ``GENERATOR_VERSION`` or ``VERSION`` constant of the module defining it; None if neither."""
    import sys

    from harness.data import DATASETS, list_datasets

    list_datasets()  # registers the built-in datasets
    if name not in DATASETS:
        return None
    declared = DATASETS.meta(name).get("version")
    if declared is not None:
        return str(declared)
    module = sys.modules.get(getattr(DATASETS.get(name), "__module__", ""), None)
    found = getattr(module, "GENERATOR_VERSION", None) or getattr(module, "VERSION", None)
    return None if found is None else str(found)


def versions() -> dict[str, str]:
    import safetensors
    import timm
    import torch

    import harness

    return {"torch": torch.__version__, "timm": timm.__version__, "safetensors": safetensors.__version__,
            "harness": harness.__version__}
