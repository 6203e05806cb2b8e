"""Test-wide settings: offline model loading and passive OpenMP waiting (set before torch loads)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


import pytest  # noqa: E402 - after the environment settings above
import torch  # noqa: E402


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: tiny models are fastest so, and two threads spin-wait badly on a
    shared 2-core machine. Restores the previous setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
