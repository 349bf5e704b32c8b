"""Search tests run single-threaded: on a shared 2-core machine two OpenMP threads of small 3-D convolutions
spin-wait on each other and run ~10x slower than one (measured); results do not depend on the thread count."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
