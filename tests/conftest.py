"""Test configuration: pytester for the plugin tests, a one-thread fixture for tiny-model tests."""

from __future__ import annotations

pytest_plugins = ["pytester"]


import pytest
import torch

# pytester's in-process runs restore sys.modules afterwards; a C extension first imported inside one
# (numpy.fft via scipy/sklearn) cannot be imported a second time. Import the heavy stack up front.
import numpy.fft  # noqa: E402,F401
import scipy.sparse.csgraph  # noqa: E402,F401
import scipy.stats  # noqa: E402,F401
import sklearn.cluster  # noqa: E402,F401
import sklearn.neighbors  # noqa: E402,F401

import harness.metrics  # noqa: E402,F401
from harness.checks.registry import list_checks  # noqa: E402

list_checks()  # imports every check module (and what they import) before any pytester run


@pytest.fixture
def one_thread(monkeypatch):
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine two OpenMP
    threads competing with other processes slow each step down by 10-100x; restored afterwards
    (``XAI_HARNESS_THREADS=1`` keeps the harness's own thread sharing from raising it again)."""
    monkeypatch.setenv("XAI_HARNESS_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
