from __future__ import annotations

import pytest

from engine.phantom import make_phantom, write_dicom_series


@pytest.fixture(scope="session")
def small_phantom():
    return make_phantom((10, 32, 40), (3.0, 4.0, 3.5), seed=11, lesions=1)


@pytest.fixture
def series_dir(tmp_path, small_phantom):
    """A fresh 10-slice explicit-VR series in tmp_path/series."""
    folder = tmp_path / "series"
    write_dicom_series(small_phantom.volume, folder, uid_seed="t")
    return folder
