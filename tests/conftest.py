"""Fixtures shared by engine and viewer tests.

``shared_data`` points at ../shared/data (real public CT, development only); tests that need it are skipped
when it is absent, so a checkout without the data still runs the rest of the suite.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# OpenMP threads that spin-wait at barriers are 10-40x slower when the cores are shared with other jobs (measured
# here: a DenseNet-121 smoke test 55 s -> 3 s).  Must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LUNGLENS_SHARED_DATA", REPO.parent / "shared" / "data"))

# Two cores on every machine here: keep torch from oversubscribing when pytest and a model share them.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
