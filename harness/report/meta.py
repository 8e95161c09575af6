"""Run metadata collected for every report: versions, device and command line."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

import harness


def collect_meta() -> dict[str, Any]:
    """The metadata every run records, without importing torch.

    The device is read only when torch is already imported (it is by the time checks run);
    otherwise it is ``None`` and the caller may pass it in ``meta``.

    Returns:
        ``harness``, ``python``, ``platform``, ``torch`` (installed version or ``None``),
        ``device`` and ``command`` (``sys.argv``).
    """
    return {
        "harness": harness.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "device": _device(),
        "command": [str(arg) for arg in sys.argv],
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _device() -> str | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        if torch.cuda.is_available():
            return f"cuda ({torch.cuda.get_device_name(0)})"
    except Exception:  # a broken driver must not break the report
        return "cpu (cuda unavailable)"
    return "cpu"
