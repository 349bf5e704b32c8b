"""Fixtures for PACS tests against a real Orthanc server (loopback ports, temporary storage).

Locally the tests skip when Orthanc is not installed; in CI (``CI=true``) a missing Orthanc is a failure,
because ``.ci/run`` installs it.  One Orthanc serves the whole session (it starts in well under a second);
tests that delete data use studies of their own.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.engine.pacs.dicom_factory import WrittenSeries, write_series
from tests.engine.pacs.orthanc_server import OrthancServer, dicomweb_plugin, orthanc_binary

IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")

# Synthetic studies with distinct patients, dates and modalities, for search tests.
STUDY_SPECS = {
    "jane": dict(patient_name="DOE^JANE", patient_id="LL-001", study_date="20200315", modality="CT",
                 accession="ACC-JANE", n_slices=6, seed=1),
    "richard": dict(patient_name="ROE^RICHARD", patient_id="LL-002", study_date="20210601", modality="CT",
                    accession="ACC-RICH", n_slices=4, seed=2),
    "john": dict(patient_name="DOE^JOHN", patient_id="LL-003", study_date="20210720", modality="MR",
                 accession="ACC-JOHN", n_slices=3, seed=3),
}


def _require_orthanc() -> None:
    missing = [what for what, found in (("orthanc", orthanc_binary()), ("orthanc-dicomweb", dicomweb_plugin()))
               if not found]
    if missing:
        reason = f"Orthanc not installed (Debian package(s) {', '.join(missing)})"
        if IN_CI:
            pytest.fail(f"{reason}: .ci/run must install it; PACS tests may not be skipped in CI")
        pytest.skip(reason)


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch) -> None:
    """No PACS test touches the real user's config or cache folders."""
    monkeypatch.setenv("LUNGLENS_CACHE_DIR", str(tmp_path / "user-cache"))
    monkeypatch.setenv("LUNGLENS_CONFIG_DIR", str(tmp_path / "user-config"))


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    _require_orthanc()
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def studies(orthanc, tmp_path_factory) -> dict[str, WrittenSeries]:
    root = tmp_path_factory.mktemp("synthetic-series")
    written = {}
    for key, spec in STUDY_SPECS.items():
        series = write_series(root / key, description=f"synthetic {key}", **spec)
        orthanc.upload(series.paths)
        written[key] = series
    return written


@pytest.fixture
def own_study(orthanc, tmp_path) -> WrittenSeries:
    """A fresh study of its own (8 CT slices), for tests that delete it or add series to it."""
    series = write_series(tmp_path / "own_study", patient_name="OWN^STUDY", patient_id="LL-OWN",
                          study_date="20220202", n_slices=8, seed=9)
    orthanc.upload(series.paths)
    return series


@pytest.fixture(scope="session")
def shared_series(orthanc, shared_data) -> dict[str, list[Path]]:
    """Real scanner series from ../shared/data loaded into Orthanc: the Philips series (Implicit VR, 64
    slices) and the first 24 slices of the RICORD series (JPEG Lossless)."""
    philips = sorted((shared_data / "dicom-series" / "lung-pet-ct-dx-A0001-kernelB").glob("*.dcm"))
    ricord = sorted((shared_data / "ct-volumes" / "ricord-1a-419639-000082").glob("*.dcm"))[:24]
    if len(philips) != 64 or len(ricord) != 24:
        pytest.skip("the expected shared DICOM series are not in ../shared/data")
    orthanc.upload(philips + ricord)
    return {"philips": philips, "ricord": ricord}


def client_server(orthanc: OrthancServer, kind: str, **changes):
    """A PacsServer for one of the three ways LungLens talks to a PACS."""
    if kind == "dicomweb":
        return orthanc.dicomweb_server(**changes)
    if kind == "dimse-get":
        return orthanc.dimse_server(retrieve="get", **changes)
    if kind == "dimse-move":
        return orthanc.dimse_server(retrieve="move", **changes)
    if kind == "dimse":
        return orthanc.dimse_server(**changes)
    raise ValueError(kind)


@pytest.fixture(scope="session")
def phantom_series(orthanc, tmp_path_factory):
    """The LungLens chest phantom (non-square, non-isotropic, two lesions) written as a compressed
    DICOM series (RLE Lossless) by ``engine.phantom`` and loaded into Orthanc.  Returns (phantom, paths)."""
    from engine.phantom import make_phantom, write_dicom_series

    phantom = make_phantom(shape=(10, 72, 96), spacing=(5.0, 1.1, 0.8), seed=4, lesions=2)
    paths = write_dicom_series(phantom.volume, tmp_path_factory.mktemp("phantom"), uid_seed="pacs-tests",
                               transfer_syntax="1.2.840.10008.1.2.5", patient_id="LL-PHANTOM")
    orthanc.upload(paths)
    return phantom, paths
