"""Data stage: datasets as ImageSets (images, binary or multi-hot labels, per-finding masks, patients, metadata)."""

from __future__ import annotations

from harness.data.imageset import ImageSet
from harness.registry import Registry

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register


def load_dataset(name: str, split: str, **options) -> ImageSet:
    """Load split ``split`` of registered dataset ``name`` with its ``options``."""
    _import_builtin()
    return DATASETS.get(name)(split=split, **options)


def dataset_fingerprint(name: str, options: dict) -> str | None:
    """Digest of the files a dataset read from disk is made of (its registered ``fingerprint(**options)``:
    label files whole, images and masks by name, size and mtime); None for generated data, which its
    version identifies. A wrapper (``base=...``) is fingerprinted through its base, with its options."""
    _import_builtin()
    if name not in DATASETS:
        return None
    base = options.get("base")
    if isinstance(base, str) and base != name:
        return dataset_fingerprint(base, {k: v for k, v in options.items() if k != "base"})
    fingerprint = DATASETS.meta(name).get("fingerprint")
    return None if fingerprint is None else fingerprint(**options)


def list_datasets() -> list[str]:
    _import_builtin()
    return DATASETS.names()


def _import_builtin() -> None:
    import harness.data.burned_token  # noqa: F401  (registers "burned-token")
    import harness.data.chexpert  # noqa: F401  (registers "chexpert")
    import harness.data.generic  # noqa: F401  (registers "generic": your own data, declared in YAML)
    import harness.data.nih_cxr14  # noqa: F401  (registers "nih-cxr14")
    import harness.data.pcam  # noqa: F401  (registers "pcam")
    import harness.data.shuffled  # noqa: F401  (registers "shuffled-labels")
    import harness.data.siim_acr  # noqa: F401  (registers "siim-acr")
    import harness.data.synth_cxr  # noqa: F401  (registers "synth-cxr")
    import harness.data.synth_cxr14  # noqa: F401  (registers "synth-cxr14")
    import harness.data.synth_histo  # noqa: F401  (registers "synth-histo")


__all__ = ["ImageSet", "DATASETS", "register_dataset", "load_dataset", "list_datasets", "dataset_fingerprint"]
