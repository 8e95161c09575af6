"""Torch threads shared fairly between the harness jobs running on one machine.

Torch sizes its intra-op pool to every core. Two such processes on two cores (a suite beside a
training run, two suites, pytest-xdist workers) oversubscribe the cores and spin against each
other: densenet121 trained in 1,689 s beside other harness jobs against 190 s alone. So every
harness job registers itself in a jobs folder (``<cache>/jobs/<host>-<pid>``), and takes
``cores available // jobs alive`` threads (at least 1), re-balanced at every epoch of a training
and every model of a population run, so a job that starts or ends shifts the others' share.

An explicit setting wins: ``XAI_HARNESS_THREADS``, else ``OMP_NUM_THREADS`` when set.
"""

from __future__ import annotations

import atexit
import os
import socket
from pathlib import Path

THREADS_ENV = "XAI_HARNESS_THREADS"

_registered: Path | None = None


def jobs_dir() -> Path:
    """Where live harness jobs are registered: ``$XAI_HARNESS_CACHE/jobs``, else the user cache."""
    from harness.data.cache import data_cache_dir

    return data_cache_dir().parent / "jobs"


def cores_available() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def fair_threads(cores: int, jobs: int, workers: int = 1) -> int:
    """Threads per job when ``jobs`` harness processes (or ``workers`` xdist workers) share ``cores``."""
    return max(1, cores // max(1, jobs, workers))


def explicit_threads() -> int | None:
    """The thread count the user set (``XAI_HARNESS_THREADS``, else ``OMP_NUM_THREADS``), or None."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        text = os.environ.get(name, "").strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a whole number of threads; unset it or give e.g. 2") from None
        if value < 1:
            raise ValueError(f"{name}={value} must be at least 1")
        return value
    return None


def register_job(folder: Path | None = None) -> Path:
    """Register this process as a live harness job (idempotent); unregistered at exit."""
    global _registered
    if _registered is not None and _registered.exists():
        return _registered
    folder = jobs_dir() if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_host()}-{os.getpid()}"
    path.write_text(str(os.getpid()))
    _registered = path
    atexit.register(_unregister, path)
    return path


def live_jobs(folder: Path | None = None) -> int:
    """How many registered jobs of this host are alive; entries of dead processes are removed."""
    folder = jobs_dir() if folder is None else folder
    if not folder.is_dir():
        return 0
    alive, prefix = 0, f"{_host()}-"
    for entry in folder.iterdir():
        if not entry.name.startswith(prefix):
            continue  # another machine sharing the cache folder
        pid = entry.name[len(prefix):]
        if pid.isdigit() and _alive(int(pid)):
            alive += 1
        else:
            entry.unlink(missing_ok=True)
    return alive


def share_threads(folder: Path | None = None) -> int:
    """Register this job and set torch's intra-op threads to its fair share; returns the count."""
    import torch

    n = explicit_threads()
    if n is None:
        try:
            register_job(folder)
            jobs = live_jobs(folder)
        except OSError:  # an unwritable cache never stops a run: fall back to this job alone
            jobs = 1
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
        n = fair_threads(cores_available(), jobs, workers)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _unregister(path: Path) -> None:
    path.unlink(missing_ok=True)
