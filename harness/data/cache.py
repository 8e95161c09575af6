"""On-disk cache of generated arrays: content-addressed ``.npz`` files, atomic writes, no pickle."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from harness.atomic import atomic_open

log = logging.getLogger(__name__)

CACHE_ENV = "XAI_HARNESS_CACHE"


def data_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The folder where generated data are cached (not created here).

    Args:
        cache_dir: explicit folder; wins over everything else.

    Returns:
        ``cache_dir``, else ``$XAI_HARNESS_CACHE/data``, else ``$XDG_CACHE_HOME/xai-harness/data``,
        else ``~/.cache/xai-harness/data``.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "data"
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "xai-harness" / "data"
    return Path.home() / ".cache" / "xai-harness" / "data"


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 hex digest of a JSON-serialisable config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> Path:
    """Write ``arrays`` to a compressed ``.npz`` atomically (temp file in the same folder, then rename).

    Object arrays are refused, so the file always loads with ``allow_pickle=False``.

    Args:
        path: destination; its folder is created if needed.
        arrays: name -> array (bool, numeric or fixed-width str).

    Returns:
        The destination path.
    """
    path = Path(path)
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; it would need pickle")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as handle:
        np.savez_compressed(handle, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def load_arrays(path: str | Path) -> dict[str, np.ndarray] | None:
    """Load an ``.npz`` written by :func:`save_arrays`, fully into memory, without pickle.

    Args:
        path: the cache file.

    Returns:
        name -> array; ``None`` when the file is missing, or unreadable (truncated, corrupted, not an
        npz, needs pickle): a warning is logged and the caller regenerates.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except Exception as error:  # noqa: BLE001  (any unreadable file means: regenerate, never crash)
        log.warning("ignoring unreadable cache file %s (%s: %s); regenerating", path, type(error).__name__, error)
        return None


def cached_split(prefix: str, config: Mapping[str, Any], generate: Callable[[], Any],
                 to_arrays: Callable[[Any], dict[str, np.ndarray]],
                 from_arrays: Callable[[dict[str, np.ndarray], Mapping[str, Any]], Any],
                 cache_dir: str | Path | None = None) -> Any:
    """Load ``<prefix>-<config hash>.npz`` from the data cache, else ``generate()`` and save it atomically.

    A cache file that does not hold this config (a hash collision or an older layout) is logged and
    regenerated, never trusted.
    """
    path = data_cache_dir(cache_dir) / f"{prefix}-{config_hash(dict(config))[:24]}.npz"
    arrays = load_arrays(path)
    if arrays is not None:
        try:
            return from_arrays(arrays, config)
        except (KeyError, ValueError) as error:
            log.warning("cache file %s does not hold this config (%s); regenerating", path, error)
    data = generate()
    save_arrays(path, to_arrays(data))
    return data
