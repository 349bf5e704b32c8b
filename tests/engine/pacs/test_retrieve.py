"""Retrieve series from a real Orthanc into the app's cache: WADO-RS, C-GET and C-MOVE, bit-identical pixels."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest

from engine.pacs import PacsCancelled, RemoteNotFoundError, cache_root, open_client
from tests.engine.pacs.conftest import client_server

KINDS = ["dicomweb", "dimse-get", "dimse-move"]


def _by_sop(paths) -> dict[str, pydicom.Dataset]:
    out = {}
    for p in paths:
        ds = pydicom.dcmread(p)
        out[str(ds.SOPInstanceUID)] = ds
    return out


def _assert_same_pixels(got_files, source_files, *, same_bytes: bool) -> None:
    """Same instances, same transfer syntax, the same encoded pixel stream byte for byte (so the same HU);
    decoding is checked on the first, middle and last instance."""
    source = _by_sop(source_files)
    got = _by_sop(got_files)
    assert set(got) == set(source)
    uids = sorted(got)
    for i, uid in enumerate(uids):
        a, b = got[uid], source[uid]
        assert a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID
        assert a.PixelData == b.PixelData
        if i in (0, len(uids) // 2, len(uids) - 1):
            assert np.array_equal(a.pixel_array, b.pixel_array)
        if same_bytes:
            assert Path(a.filename).read_bytes() == Path(b.filename).read_bytes()


@pytest.mark.parametrize("kind", KINDS)
def test_retrieve_lands_in_cache_bit_identical_with_progress(orthanc, studies, kind):
    jane = studies["jane"]
    client = open_client(client_server(orthanc, kind))
    reports = []
    got = client.retrieve_series(jane.study_uid, jane.series_uid, progress=reports.append)
    root = cache_root()
    assert got.folder == root / jane.study_uid / jane.series_uid
    assert root in got.folder.parents and "user-cache" in str(root)  # the isolated app cache, not a user folder
    assert sorted(p.name for p in got.folder.iterdir()) == sorted(f"{u}.dcm" for u in jane.sop_uids)
    assert got.n_instances == 6 and not got.from_cache
    # DICOMweb asks for the stored transfer syntax: the file itself comes back unchanged
    _assert_same_pixels(got.files, jane.paths, same_bytes=(kind == "dicomweb"))
    # progress: 0..6 of 6, monotonic, with growing byte counts
    assert [r.done for r in reports] == list(range(7))
    assert {r.total for r in reports} == {6} and reports[-1].fraction == 1.0
    assert reports[-1].bytes_done == sum(p.stat().st_size for p in got.files)
    # a second retrieve reuses the complete cached series; refresh downloads again
    again = client.retrieve_series(jane.study_uid, jane.series_uid)
    assert again.from_cache and again.files == got.files
    fresh = client.retrieve_series(jane.study_uid, jane.series_uid, refresh=True)
    assert not fresh.from_cache and fresh.n_instances == 6
    assert not [p for p in got.folder.parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


@pytest.mark.slow  # ~90 full-size slices (42 MB) through Orthanc: seconds, not milliseconds
@pytest.mark.parametrize("kind, name", [("dicomweb", "philips"), ("dimse-get", "ricord"), ("dimse-move", "ricord")])
def test_retrieve_real_scanner_series_bit_identical(orthanc, shared_series, kind, name):
    """The 64-slice Philips series (Implicit VR) and a RICORD series (JPEG Lossless): the cached files hold
    the same encoded pixel data as the originals (nothing transcoded) and decode to identical values."""
    client = open_client(client_server(orthanc, kind))
    head = pydicom.dcmread(shared_series[name][0], stop_before_pixels=True)
    got = client.retrieve_series(str(head.StudyInstanceUID), str(head.SeriesInstanceUID))
    assert got.n_instances == len(shared_series[name])
    _assert_same_pixels(got.files, shared_series[name], same_bytes=(kind == "dicomweb"))


@pytest.mark.parametrize("kind", KINDS)
def test_cancel_leaves_nothing_in_cache(orthanc, studies, kind):
    richard = studies["richard"]
    client = open_client(client_server(orthanc, kind))
    stop = threading.Event()

    def progress(p):
        if p.done >= 2:
            stop.set()

    with pytest.raises(PacsCancelled, match="cancelled"):
        client.retrieve_series(richard.study_uid, richard.series_uid, progress=progress, cancel=stop)
    study_dir = cache_root() / richard.study_uid
    assert not study_dir.exists() or not any(study_dir.iterdir())
    # the server is fine afterwards and a plain retrieve completes
    assert client.retrieve_series(richard.study_uid, richard.series_uid).n_instances == 4


@pytest.mark.parametrize("kind", ["dicomweb", "dimse"])
def test_unknown_series_is_a_clear_not_found(orthanc, studies, kind):
    client = open_client(client_server(orthanc, kind))
    with pytest.raises(RemoteNotFoundError, match="is not on the"):
        client.retrieve_series(studies["jane"].study_uid, "1.2.3.4.5.6.7.8")


def test_malicious_uid_cannot_escape_the_cache(orthanc, studies):
    from engine.pacs import PacsError

    client = open_client(client_server(orthanc, "dicomweb"))
    with pytest.raises(PacsError, match="invalid"):
        client.retrieve_series("../../etc", studies["jane"].series_uid)


@pytest.mark.parametrize("kind", KINDS)
def test_retrieved_phantom_loads_as_the_same_volume(orthanc, phantom_series, kind):
    """PACS -> cache -> engine.io: the retrieved phantom series (RLE Lossless) loads back as exactly the
    phantom's HU volume with its non-isotropic spacing."""
    from engine.io import load_volume

    phantom, paths = phantom_series
    head = pydicom.dcmread(paths[0], stop_before_pixels=True)
    client = open_client(client_server(orthanc, kind))
    got = client.retrieve_series(str(head.StudyInstanceUID), str(head.SeriesInstanceUID), refresh=True)
    _assert_same_pixels(got.files, paths, same_bytes=(kind == "dicomweb"))
    volume = load_volume(got.folder)
    assert volume.shape == phantom.volume.shape == (10, 72, 96)
    assert np.allclose(volume.spacing, (5.0, 1.1, 0.8))
    assert np.array_equal(np.asarray(volume.array, np.float32), np.asarray(phantom.volume.array, np.float32))


@pytest.mark.parametrize("kind", ["dicomweb", "dimse-get"])
def test_a_failing_progress_callback_aborts_cleanly(orthanc, studies, kind):
    """A bug in the caller's callback surfaces as itself (not as a PACS error) and leaves no partial series."""
    richard = studies["richard"]

    def broken(p):
        if p.done == 1:
            raise RuntimeError("viewer bug")

    with pytest.raises(RuntimeError, match="viewer bug"):
        open_client(client_server(orthanc, kind)).retrieve_series(richard.study_uid, richard.series_uid,
                                                                    progress=broken, refresh=True)
    study_dir = cache_root() / richard.study_uid
    assert not study_dir.exists() or not any(study_dir.iterdir())
