"""reports/latest/: a copy of the newest run, swapped in so it is never half-written."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from pathlib import Path

LATEST_DIRNAME = "latest"

log = logging.getLogger(__name__)


def mirror_latest(run_dir: Path, latest: Path | None = None, *, attempts: int = 5) -> Path:
    """Make ``latest`` a copy of ``run_dir``, replacing the previous copy.

    The copy is built in a hidden staging directory next to ``latest``; then the old ``latest``
    is renamed away, the staging directory renamed in, and the old one deleted. Readers thus see
    the old complete copy, the new complete copy, or (for an instant) none, never a partial one.
    If another run swaps its copy in at the same moment, the swap is retried.

    Args:
        run_dir: The run directory to mirror.
        latest: The mirror (default: ``run_dir.parent / "latest"``).
        attempts: How often to retry when a parallel run wins the race.

    Returns:
        The path of ``latest``.
    """
    latest = Path(latest) if latest is not None else Path(run_dir).parent / LATEST_DIRNAME
    staging = Path(tempfile.mkdtemp(prefix=f".{latest.name}-new-", dir=latest.parent))
    try:
        shutil.copytree(run_dir, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*.tmp"))
        _swap_in(staging, latest, attempts)
    except BaseException:
        _remove(staging)
        raise
    return latest


def _swap_in(staging: Path, latest: Path, attempts: int) -> None:
    for attempt in range(attempts):
        retired = _retire(latest)
        try:
            os.replace(staging, latest)
        except OSError:  # a parallel run put its copy in between our two renames
            if attempt == attempts - 1:
                raise
            log.debug("latest/ swap lost a race; retrying")
            continue
        finally:
            if retired is not None:
                _remove(retired)
        return


def _retire(latest: Path) -> Path | None:
    """Rename the current ``latest`` to a hidden name; ``None`` when there is none."""
    if not (latest.exists() or latest.is_symlink()):
        return None
    retired = latest.with_name(f".{latest.name}-old-{secrets.token_hex(4)}")
    try:
        os.replace(latest, retired)
    except FileNotFoundError:  # a parallel run retired it first
        return None
    return retired


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
