from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write exports into the real user cache from tests."""
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "lunglens-cache"))
