"""Test configuration: pytester for the plugin tests, a one-thread fixture for tiny-model tests."""

from __future__ import annotations

pytest_plugins = ["pytester"]


import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine two OpenMP
    threads competing with other processes slow each step down by 10-100x; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
