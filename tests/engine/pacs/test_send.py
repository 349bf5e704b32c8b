"""Send the heatmap Secondary Capture back to a real Orthanc (C-STORE and STOW-RS): the PACS files it in the
source study, and it comes back unchanged."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from engine.export import heatmap_secondary_capture
from engine.pacs import PacsError, SendRejectedError, open_client
from tests.engine.pacs.conftest import client_server


def _capture(source_path, **kwargs):
    ds = pydicom.dcmread(source_path)
    heat = np.zeros(ds.pixel_array.shape, np.float32)
    heat[10:25, 15:35] = 1.0
    return heatmap_secondary_capture(source_path, ds.pixel_array, heat, model_name="squeezenet",
                                     explainer="gradcam", **kwargs)


@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_send_secondary_capture_lands_in_the_source_study(orthanc, own_study, tmp_path, kind):
    jane = own_study
    sc = _capture(jane.paths[2])
    client = open_client(client_server(orthanc, kind))
    reports = []
    result = client.send([sc], progress=reports.append)
    assert result.stored == (sc.SOPInstanceUID,)
    assert reports[-1].done == reports[-1].total == 1
    # Orthanc files it under the source study (same patient), as a new OT series
    assert orthanc.study_series_uids(jane.study_uid) >= {jane.series_uid, sc.SeriesInstanceUID}
    series = {s.series_uid: s for s in client.find_series(jane.study_uid)}
    assert series[sc.SeriesInstanceUID].modality == "OT"
    assert "NOT FOR DIAGNOSIS" in series[sc.SeriesInstanceUID].series_description
    # what the PACS stored is what we sent
    stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.instance_file(sc.SOPInstanceUID)))
    assert stored.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert stored.PatientID == "LL-OWN" and stored.StudyInstanceUID == jane.study_uid
    assert np.array_equal(stored.pixel_array, sc.pixel_array)
    # and the client retrieves it back like any other series
    got = client.retrieve_series(jane.study_uid, sc.SeriesInstanceUID)
    assert np.array_equal(pydicom.dcmread(got.files[0]).pixel_array, sc.pixel_array)


@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_send_files_and_multiframe_capture(orthanc, own_study, tmp_path, kind):
    richard = own_study
    images = np.stack([pydicom.dcmread(p).pixel_array for p in richard.paths])
    heat = np.zeros(images.shape, np.float32)
    heat[:, 5:15, 5:20] = 0.8
    mf = heatmap_secondary_capture(list(richard.paths), images, heat, model_name="covidnet3d")
    single = _capture(richard.paths[0])
    out = tmp_path / "exports"
    out.mkdir()
    path = single.save(out)
    client = open_client(client_server(orthanc, kind))
    result = client.send([path, mf])
    assert set(result.stored) == {single.SOPInstanceUID, mf.SOPInstanceUID}
    stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.instance_file(mf.SOPInstanceUID)))
    assert stored.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.4" and int(stored.NumberOfFrames) == 8
    assert np.array_equal(stored.pixel_array, mf.pixel_array)


@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_send_bad_input_is_clear(orthanc, tmp_path, kind):
    client = open_client(client_server(orthanc, kind))
    junk = tmp_path / "notes.txt"
    junk.write_text("not DICOM")
    with pytest.raises(PacsError, match="not a readable DICOM file"):
        client.send([junk])
    with pytest.raises(PacsError, match="no such file"):
        client.send([tmp_path / "missing.dcm"])


@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_refused_instance_is_reported_per_instance(orthanc, own_study, kind):
    """An instance the server cannot file (no StudyInstanceUID) is refused: the error names it, and the good
    instance sent with it is stored."""
    good = _capture(own_study.paths[0])
    bad = _capture(own_study.paths[1])
    del bad.StudyInstanceUID
    client = open_client(client_server(orthanc, kind))
    with pytest.raises(SendRejectedError) as info:
        client.send([good, bad])
    assert set(info.value.failed) == {bad.SOPInstanceUID}
    assert info.value.stored == (good.SOPInstanceUID,)
    assert "refused 1 of 2" in str(info.value) and "1 stored" in str(info.value)
    assert orthanc.instance_file(good.SOPInstanceUID)


@pytest.mark.parametrize("kind", ["dimse", "dicomweb"])
def test_send_a_folder_skips_non_dicom_files(orthanc, own_study, tmp_path, kind):
    folder = tmp_path / "to-send"
    (folder / "sub").mkdir(parents=True)
    for i, path in enumerate(own_study.paths):
        (folder / ("sub" if i % 2 else "") / path.name).write_bytes(path.read_bytes())
    (folder / "README.txt").write_text("not DICOM")
    orthanc.delete_study(own_study.study_uid)
    reports = []
    result = open_client(client_server(orthanc, kind)).send([folder], progress=reports.append)
    assert set(result.stored) == set(own_study.sop_uids)
    assert reports[-1].done == reports[-1].total == 8
    assert orthanc.series_instance_count(own_study.series_uid) == 8
    # a file sent from disk is stored unchanged: the whole file over STOW-RS; the data set over C-STORE
    # (where the receiver writes its own file meta header)
    stored = orthanc.instance_file(own_study.sop_uids[0])
    original = own_study.paths[0].read_bytes()
    if kind == "dicomweb":
        assert stored == original
    a = pydicom.dcmread(pydicom.filebase.DicomBytesIO(stored))
    b = pydicom.dcmread(pydicom.filebase.DicomBytesIO(original))
    assert a == b and a.PixelData == b.PixelData
