"""Heatmap Secondary Capture: burned-in overlay at the right pixels, "not for diagnosis" label, new UIDs in the
source's study, a validating constructor, and it never writes into the source folder."""

from __future__ import annotations

import hashlib

import numpy as np
import pydicom
import pytest

from engine.export import ExportError, SecondaryCaptureImage, heatmap_secondary_capture, render_overlay
from engine.export.secondary_capture import MULTIFRAME_TRUE_COLOR_SC_STORAGE, SC_IMAGE_STORAGE
from tests.engine.pacs.dicom_factory import write_series

ROWS, COLS = 90, 130  # non-square on purpose


@pytest.fixture
def series(tmp_path):
    return write_series(tmp_path / "scan", patient_name="DOE^JANE", patient_id="LL-001", study_date="20200315",
                        n_slices=3, rows=ROWS, cols=COLS, accession="ACC-1")


def _blob_heatmap(shape=(ROWS, COLS), center=(60, 95), radius=8):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (((yy - center[0]) ** 2 + (xx - center[1]) ** 2) <= radius ** 2).astype(np.float32)


def _is_grey(rgb):
    return (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])


def test_overlay_is_drawn_exactly_where_the_heatmap_is(series):
    image = pydicom.dcmread(series.paths[0]).pixel_array
    heat = _blob_heatmap()
    rgb = render_overlay(image, heat, window=(-600, 1500), colormap="inferno", opacity=0.6, threshold=0.5)
    assert rgb.shape == (ROWS, COLS, 3) and rgb.dtype == np.uint8
    coloured = ~_is_grey(rgb)
    assert np.array_equal(coloured, heat >= 0.5)  # every blob pixel tinted, nothing else
    # the grey part is the windowed CT: -600/1500 maps body (~20 HU) brighter than air (-1000 HU)
    assert rgb[45, 65, 0] > rgb[2, 2, 0]


def test_capture_dataset_links_to_source_study(series, tmp_path):
    image = pydicom.dcmread(series.paths[1]).pixel_array
    sc = heatmap_secondary_capture(series.paths[1], image, _blob_heatmap(), model_name="squeezenet",
                                   explainer="gradcam", score=0.91)
    out = tmp_path / "exports"
    out.mkdir()
    path = sc.save(out / "heatmap.dcm")
    back = pydicom.dcmread(path)
    src = pydicom.dcmread(series.paths[1])
    assert back.SOPClassUID == SC_IMAGE_STORAGE == back.file_meta.MediaStorageSOPClassUID
    assert back.SOPInstanceUID != src.SOPInstanceUID and back.SeriesInstanceUID != src.SeriesInstanceUID
    for key in ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                "AccessionNumber", "StudyID"):
        assert back[key].value == src[key].value, key
    assert back.Modality == "OT" and back.ConversionType == "WSD"
    assert back.BurnedInAnnotation == "YES" and list(back.ImageType) == ["DERIVED", "SECONDARY"]
    assert "not a diagnosis" in back.ImageComments and "NOT FOR DIAGNOSIS" in back.SeriesDescription
    assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    assert list(back.PatientOrientation) == ["L", "P"]
    assert [float(v) for v in back.PixelSpacing] == [0.7, 0.7]
    assert (back.Rows, back.Columns, back.SamplesPerPixel, back.PhotometricInterpretation) == (ROWS, COLS, 3, "RGB")
    assert np.array_equal(back.pixel_array, sc.pixel_array)
    # the heatmap blob is coloured in the saved pixels; a grey pixel far from blob and text stays grey
    assert not _is_grey(back.pixel_array[60, 95]) and _is_grey(back.pixel_array[80, 20])
    assert "squeezenet" in back.DerivationDescription


def test_not_for_diagnosis_text_is_burned_in(series):
    image = pydicom.dcmread(series.paths[0]).pixel_array
    heat = np.zeros((ROWS, COLS), np.float32)
    plain = render_overlay(image, heat)
    sc = heatmap_secondary_capture(series.paths[0], image, heat, colorbar=False)
    changed = np.any(sc.pixel_array != plain, axis=2)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 100                        # text pixels exist
    assert ys.max() < ROWS * 0.6 and xs.min() < 10    # ... in the top-left block
    yellow = (sc.pixel_array[..., 0] > 200) & (sc.pixel_array[..., 1] > 180) & (sc.pixel_array[..., 2] < 80)
    assert yellow[: ROWS // 4].sum() > 10             # the first line ("NOT FOR DIAGNOSIS") is yellow


def test_multiframe_capture(series, tmp_path):
    images = np.stack([pydicom.dcmread(p).pixel_array for p in series.paths])
    heats = np.stack([_blob_heatmap(center=(30 + 10 * k, 40 + 20 * k)) for k in range(3)])
    sc = heatmap_secondary_capture(list(series.paths), images, heats, opacity=0.7)
    back = pydicom.dcmread(sc.save(tmp_path / "mf.dcm"))
    assert back.SOPClassUID == MULTIFRAME_TRUE_COLOR_SC_STORAGE and int(back.NumberOfFrames) == 3
    assert back.FrameIncrementPointer == pydicom.tag.Tag("SliceLocationVector")
    assert [float(v) for v in back.SliceLocationVector] == [-100.0, -97.5, -95.0]
    assert len(back.SourceImageSequence) == 3
    frames = back.pixel_array
    assert frames.shape == (3, ROWS, COLS, 3)
    for k in range(3):
        assert not _is_grey(frames[k, 30 + 10 * k, 40 + 20 * k])


def test_refuses_to_write_into_the_source_folder(series, tmp_path):
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in series.paths}
    image = pydicom.dcmread(series.paths[0]).pixel_array
    sc = heatmap_secondary_capture(series.paths[0], image, _blob_heatmap())
    scan_dir = series.paths[0].parent
    for target in (scan_dir / "sc.dcm", scan_dir, scan_dir / "sub"):
        if target.name == "sub":
            target.mkdir()
        with pytest.raises(ExportError, match="source scan's folder"):
            sc.save(target)
    # also when the caller passes a header Dataset read from the file
    sc2 = SecondaryCaptureImage(pydicom.dcmread(series.paths[0], stop_before_pixels=True), sc.pixel_array)
    with pytest.raises(ExportError, match="source scan's folder"):
        sc2.save(scan_dir / "x.dcm")
    assert sorted(p.name for p in scan_dir.iterdir()) == sorted([p.name for p in series.paths] + ["sub"])
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in series.paths} == before
    # elsewhere: writes once, refuses to overwrite unless asked, needs an existing folder
    target = tmp_path / "out.dcm"
    sc.save(target)
    with pytest.raises(ExportError, match="already exists"):
        sc.save(target)
    sc.save(target, overwrite=True)
    with pytest.raises(ExportError, match="does not exist"):
        sc.save(tmp_path / "missing" / "x.dcm")


def test_validating_constructor(series):
    header = pydicom.dcmread(series.paths[0], stop_before_pixels=True)
    rgb = np.zeros((ROWS, COLS, 3), np.uint8)
    with pytest.raises(ExportError, match="uint8"):
        SecondaryCaptureImage(header, rgb.astype(np.float32))
    with pytest.raises(ExportError, match="3 colour samples"):
        SecondaryCaptureImage(header, np.zeros((ROWS, COLS, 4), np.uint8))
    with pytest.raises(ExportError, match="must be"):
        SecondaryCaptureImage(header, np.zeros((ROWS,), np.uint8))
    with pytest.raises(ExportError, match="new Series and SOP Instance UIDs"):
        SecondaryCaptureImage(header, rgb, sop_instance_uid=header.SOPInstanceUID)
    with pytest.raises(ExportError, match="not a valid DICOM UID"):
        SecondaryCaptureImage(header, rgb, series_instance_uid="1.2.abc")
    with pytest.raises(ExportError, match="one per frame"):
        SecondaryCaptureImage([header, header], np.zeros((3, ROWS, COLS, 3), np.uint8))
    no_study = pydicom.dcmread(series.paths[0], stop_before_pixels=True)
    del no_study.StudyInstanceUID
    with pytest.raises(ExportError, match="no StudyInstanceUID"):
        SecondaryCaptureImage(no_study, rgb)
    with pytest.raises(ExportError, match="DICOM header"):
        SecondaryCaptureImage(None, rgb)  # type: ignore[arg-type]


def test_rendering_input_errors(series, tmp_path):
    image = pydicom.dcmread(series.paths[0]).pixel_array
    with pytest.raises(ExportError, match="shape"):
        render_overlay(image, np.zeros((ROWS, COLS + 1)))
    bad = _blob_heatmap()
    bad[0, 0] = np.nan
    with pytest.raises(ExportError, match="NaN"):
        render_overlay(image, bad)
    with pytest.raises(ExportError, match="opacity"):
        render_overlay(image, _blob_heatmap(), opacity=1.5)
    with pytest.raises(ExportError, match="unknown colormap"):
        render_overlay(image, _blob_heatmap(), colormap="not-a-map")
    png = tmp_path / "slice.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ExportError, match="cannot read the source slice"):
        heatmap_secondary_capture(png, image, _blob_heatmap())


def test_real_ricord_slice(shared_data, tmp_path):
    """A JPEG-Lossless RICORD slice: patient/study copied, 512x512 capture readable by pydicom."""
    source = sorted((shared_data / "ct-volumes" / "ricord-1a-419639-000082").glob("*.dcm"))[100]
    ds = pydicom.dcmread(source)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    heat = np.zeros(hu.shape, np.float32)
    heat[200:300, 100:200] = np.linspace(0, 1, 100)[None, :]
    sc = heatmap_secondary_capture(source, hu, heat, model_name="m", explainer="layercam", threshold=0.2)
    back = pydicom.dcmread(sc.save(tmp_path / "ricord_sc.dcm"))
    assert back.PatientID == ds.PatientID and back.StudyInstanceUID == ds.StudyInstanceUID
    assert back.pixel_array.shape == (512, 512, 3)
    assert _is_grey(back.pixel_array[250, 110]) and not _is_grey(back.pixel_array[250, 190])
