"""DICOM Secondary Capture of a CT slice (or a stack) with a burned-in heatmap and a "not for diagnosis" label.

One module per DICOM object, highdicom-style: :class:`SecondaryCaptureImage` is a ``pydicom.Dataset`` whose
constructor validates its inputs and fills every module of the IOD, so whatever it returns can be saved or
sent to a PACS as is::

    sc = heatmap_secondary_capture(source_file, hu_slice, heatmap, model_name="squeezenet", explainer="gradcam")
    sc.save(out_dir / "heatmap.dcm")        # refuses the source scan's folder
    open_client(server).send([sc])           # C-STORE / STOW-RS; the PACS files it with the source study

* One slice -> Secondary Capture Image Storage (RGB); a stack of slices -> Multi-frame True Color Secondary
  Capture.  New SOP Instance and Series UIDs; the patient and study modules are copied from the source, so
  the PACS shows the capture inside the same study.
* ``BurnedInAnnotation = YES``, ``ImageType = DERIVED\\SECONDARY``, a Source Image Sequence naming the CT
  slice(s), and the burned-in text "NOT FOR DIAGNOSIS" on every frame.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

import engine

SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_TRUE_COLOR_SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7.4"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSIS"
RESEARCH_NOTE = "LungLens research output - not a diagnosis"
DEFAULT_SERIES_NUMBER = 9901
DEFAULT_WINDOW = (-600.0, 1500.0)  # lung window (center, width) in HU

# Patient / study attributes copied from the source so the PACS files the capture with the study.
_PATIENT_KEYWORDS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
                     "OtherPatientIDsSequence", "PatientComments", "PatientIdentityRemoved",
                     "DeidentificationMethod", "EthnicGroup")
_STUDY_KEYWORDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
                   "AccessionNumber", "StudyDescription", "PatientAge", "PatientSize", "PatientWeight",
                   "IssuerOfAccessionNumberSequence")
_TYPE2_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                "ReferringPhysicianName", "StudyID", "AccessionNumber")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class ExportError(Exception):
    """The export cannot be made or written (bad input, the source folder as target, file exists, ...)."""


# -- rendering --------------------------------------------------------------------------------------------
def window_to_uint8(image: np.ndarray, center: float, width: float) -> np.ndarray:
    """Grey levels 0..255 of ``image`` under a window (HU center/width)."""
    if width <= 0:
        raise ExportError(f"window width must be positive, got {width}")
    lo = center - width / 2.0
    scaled = (np.asarray(image, dtype=np.float32) - lo) * (255.0 / width)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def colormap_lut(name: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table of a matplotlib colormap (perceptual maps: inferno, magma, viridis...)."""
    from matplotlib import colormaps

    try:
        cmap = colormaps[name]
    except KeyError as exc:
        raise ExportError(f"unknown colormap {name!r}; use e.g. inferno, magma, viridis, plasma, turbo or jet") \
            from exc
    return np.rint(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def render_overlay(image: np.ndarray, heatmap: np.ndarray, *, window: tuple[float, float] = DEFAULT_WINDOW,
                   colormap: str = "inferno", opacity: float = 0.5, threshold: float = 0.0,
                   heat_range: tuple[float, float] = (0.0, 1.0), is_hu: bool = True) -> np.ndarray:
    """Blend a heatmap over a windowed slice: (H, W) image + (H, W) heatmap -> (H, W, 3) uint8 RGB.

    ``heatmap`` values are mapped from ``heat_range`` to the colormap; voxels at or below the range's low end,
    or below ``threshold`` (in the heatmap's units), stay grey.  ``is_hu=False`` treats ``image`` as already 0..255 grey (PNG/JPEG stacks).
    """
    image = np.asarray(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if image.ndim != 2:
        raise ExportError(f"the slice must be a 2-D (rows, columns) array, got shape {image.shape}")
    if heatmap.shape != image.shape:
        raise ExportError(f"the heatmap {heatmap.shape} must have the slice's shape {image.shape}: resample it "
                          f"to the slice's voxels first (Preprocess.to_voxels)")
    if not np.isfinite(heatmap).all():
        raise ExportError("the heatmap contains NaN or infinite values")
    if not 0.0 <= opacity <= 1.0:
        raise ExportError(f"opacity must be in [0, 1], got {opacity}")
    lo, hi = heat_range
    if not hi > lo:
        raise ExportError(f"heat_range must be (low, high) with high > low, got {heat_range}")
    grey = window_to_uint8(image, *window) if is_hu else np.clip(image, 0, 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    level = np.clip((heatmap - lo) / (hi - lo), 0.0, 1.0)
    colour = colormap_lut(colormap)[np.rint(level * 255).astype(np.int64)].astype(np.float32)
    alpha = np.where((heatmap >= threshold) & (level > 0.0), opacity, 0.0).astype(np.float32)[..., None]
    out = rgb * (1.0 - alpha) + colour * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def burn_in(rgb: np.ndarray, lines: Sequence[str], *, colorbar: str | None = None,
            heat_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """Return a copy of ``rgb`` with ``lines`` written top-left (first line in yellow) and an optional colour
    bar at the right edge.  White/yellow text on a dark outline stays readable over any anatomy."""
    from PIL import Image, ImageDraw

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ExportError(f"burn_in needs an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    height, width = rgb.shape[:2]
    img = Image.fromarray(rgb, mode="RGB")
    draw = ImageDraw.Draw(img)
    size = max(9, int(round(min(height, width) / 30)))
    font = _font(size)
    margin = max(2, size // 3)
    y = margin
    for i, line in enumerate(lines):
        fill = (255, 230, 0) if i == 0 else (255, 255, 255)
        draw.text((margin, y), line, font=font, fill=fill, stroke_width=max(1, size // 8), stroke_fill=(0, 0, 0))
        box = draw.textbbox((margin, y), line, font=font, stroke_width=max(1, size // 8))
        y = box[3] + max(1, size // 4)
    if colorbar:
        lut = colormap_lut(colorbar)
        bar_w = max(4, width // 40)
        top, bottom = int(height * 0.25), int(height * 0.75)
        x1 = width - margin - bar_w
        if bottom - top >= 8 and x1 > width // 2:
            levels = np.linspace(255, 0, bottom - top).astype(np.int64)
            strip = np.repeat(lut[levels][:, None, :], bar_w, axis=1)
            arr = np.array(img)
            arr[top:bottom, x1:x1 + bar_w] = strip
            img = Image.fromarray(arr, mode="RGB")
            draw = ImageDraw.Draw(img)
            small = _font(max(8, size * 3 // 4))
            for value, yy in ((heat_range[1], top), (heat_range[0], bottom)):
                label = f"{value:g}"
                box = draw.textbbox((0, 0), label, font=small)
                draw.text((x1 - (box[2] - box[0]) - margin, yy - (box[3] - box[1]) // 2), label, font=small,
                          fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    return np.array(img, dtype=np.uint8)


# -- the DICOM object -------------------------------------------------------------------------------------
def _orientation_letters(vector: Sequence[float]) -> str:
    """Patient-orientation letters of a direction in LPS (e.g. (1, 0, 0) -> 'L')."""
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    comps = sorted(range(3), key=lambda i: -abs(float(vector[i])))
    letters = ""
    for i in comps:
        if abs(float(vector[i])) > 0.25:
            letters += names[i][0] if float(vector[i]) > 0 else names[i][1]
    return letters[:3]


def _check_uid(value: str, what: str) -> str:
    text = str(value)
    if not _UID_RE.match(text) or len(text) > 64:
        raise ExportError(f"{what} {value!r} is not a valid DICOM UID")
    return text


class SecondaryCaptureImage(Dataset):
    """A Secondary Capture (one RGB frame) or Multi-frame True Color SC (several) derived from CT slice(s).

    ``sources``: the header dataset(s) of the source slice(s) -- one, or one per frame.  Their patient and
    study modules are copied; their files' folders (``Dataset.filename``, plus ``source_paths``) are
    remembered so :meth:`save` refuses to write there.
    """

    def __init__(self, sources: Dataset | Sequence[Dataset], pixel_array: np.ndarray, *,
                 series_instance_uid: str | None = None, sop_instance_uid: str | None = None,
                 series_number: int = DEFAULT_SERIES_NUMBER, instance_number: int = 1,
                 series_description: str = "LungLens heatmap (NOT FOR DIAGNOSIS)",
                 derivation_description: str = "", image_comments: str = RESEARCH_NOTE,
                 pixel_spacing: Sequence[float] | None = None, manufacturer: str = "LungLens",
                 software_version: str | None = None, source_paths: Sequence[str | Path] = ()):
        super().__init__()
        srcs = [sources] if isinstance(sources, Dataset) else list(sources or [])
        if not srcs or not all(isinstance(s, Dataset) for s in srcs):
            raise ExportError("a Secondary Capture needs the source slice's DICOM header (a pydicom Dataset); "
                              "non-DICOM scans (NIfTI, PNG) cannot be linked to a PACS study: export PNG instead")
        pixels = np.asarray(pixel_array)
        if pixels.dtype != np.uint8:
            raise ExportError(f"pixel_array must be uint8 RGB, got dtype {pixels.dtype}")
        if pixels.ndim == 3:
            frames = pixels[None]
        elif pixels.ndim == 4:
            frames = pixels
        else:
            raise ExportError(f"pixel_array must be (rows, columns, 3) or (frames, rows, columns, 3), got shape "
                              f"{pixels.shape}")
        n_frames, rows, cols, samples = frames.shape
        if samples != 3:
            raise ExportError(f"pixel_array must have 3 colour samples (RGB) in its last axis, got {samples}")
        if n_frames < 1 or not (1 <= rows <= 65535 and 1 <= cols <= 65535):
            raise ExportError(f"pixel_array has an empty or too large frame: shape {pixels.shape}")
        if len(srcs) not in (1, n_frames):
            raise ExportError(f"give one source header, or one per frame: got {len(srcs)} for {n_frames} frames")
        for i, src in enumerate(srcs):
            for key in ("StudyInstanceUID", "SOPInstanceUID", "SOPClassUID"):
                if not str(src.get(key, "") or ""):
                    raise ExportError(f"source header #{i} has no {key}; the capture could not be linked to its "
                                      f"study")
        study_uid = _check_uid(srcs[0].StudyInstanceUID, "source StudyInstanceUID")
        if any(str(s.StudyInstanceUID) != study_uid for s in srcs):
            raise ExportError("all source slices must belong to one study (different StudyInstanceUIDs given)")
        source_series = {str(s.get("SeriesInstanceUID", "")) for s in srcs}
        source_sops = {str(s.SOPInstanceUID) for s in srcs}
        series_uid = _check_uid(series_instance_uid or generate_uid(), "series_instance_uid")
        sop_uid = _check_uid(sop_instance_uid or generate_uid(), "sop_instance_uid")
        if series_uid in source_series or sop_uid in source_sops or series_uid == sop_uid:
            raise ExportError("the capture needs new Series and SOP Instance UIDs, different from the source's")
        if not 0 <= int(series_number) <= 2**31 - 1 or not 0 <= int(instance_number) <= 2**31 - 1:
            raise ExportError("series_number and instance_number must be non-negative integers")

        first = srcs[0]
        multi = n_frames > 1
        sop_class = MULTIFRAME_TRUE_COLOR_SC_STORAGE if multi else SC_IMAGE_STORAGE
        now = _dt.datetime.now()
        date, time_ = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
        software = software_version or f"LungLens {engine.__version__}"

        # SOP common
        if "SpecificCharacterSet" in first:
            self.SpecificCharacterSet = first.SpecificCharacterSet
        self.SOPClassUID = sop_class
        self.SOPInstanceUID = sop_uid
        self.InstanceCreationDate, self.InstanceCreationTime = date, time_
        # Patient + General Study + Patient Study: copied, so the PACS files it with the source study
        for key in _PATIENT_KEYWORDS + _STUDY_KEYWORDS:
            if key in first:
                self[key] = first[key]
        for key in _TYPE2_EMPTY:
            if key not in self:
                setattr(self, key, "")
        # General Series
        self.Modality = "OT"
        self.SeriesInstanceUID = series_uid
        self.SeriesNumber = int(series_number)
        self.SeriesDescription = series_description[:64]
        self.SeriesDate, self.SeriesTime = date, time_
        # General Equipment + SC Equipment
        self.Manufacturer = manufacturer
        self.SoftwareVersions = software
        self.ConversionType = "WSD"
        self.SecondaryCaptureDeviceManufacturer = manufacturer
        self.SecondaryCaptureDeviceManufacturerModelName = "LungLens"
        self.SecondaryCaptureDeviceSoftwareVersions = software
        # General Image + SC Image
        self.InstanceNumber = int(instance_number)
        iop = first.get("ImageOrientationPatient")
        self.PatientOrientation = ([_orientation_letters(iop[:3]), _orientation_letters(iop[3:])]
                                   if iop is not None and len(iop) == 6 else "")
        self.ContentDate, self.ContentTime = date, time_
        self.DateOfSecondaryCapture, self.TimeOfSecondaryCapture = date, time_
        self.ImageType = ["DERIVED", "SECONDARY"]
        self.DerivationDescription = (derivation_description or
                                      "Heatmap of a neural network burned into the CT image")[:1024]
        self.BurnedInAnnotation = "YES"
        self.RecognizableVisualFeatures = "NO"
        self.LossyImageCompression = "00"
        self.ImageComments = image_comments[:10240]
        spacing = pixel_spacing if pixel_spacing is not None else first.get("PixelSpacing")
        if spacing is not None:
            if len(spacing) != 2 or min(float(v) for v in spacing) <= 0:
                raise ExportError(f"pixel_spacing must be two positive mm values (row, column), got {spacing}")
            self.PixelSpacing = [f"{float(v):.6g}" for v in spacing]
        refs = []
        for src in srcs:
            item = Dataset()
            item.ReferencedSOPClassUID = src.SOPClassUID
            item.ReferencedSOPInstanceUID = src.SOPInstanceUID
            refs.append(item)
        self.SourceImageSequence = refs
        # Image Pixel
        self.SamplesPerPixel = 3
        self.PhotometricInterpretation = "RGB"
        self.PlanarConfiguration = 0
        self.Rows, self.Columns = rows, cols
        self.BitsAllocated, self.BitsStored, self.HighBit = 8, 8, 7
        self.PixelRepresentation = 0
        if multi:  # Multi-frame + SC Multi-frame Image modules
            self.NumberOfFrames = n_frames
            locations = _slice_locations(srcs) if len(srcs) == n_frames else None
            if locations is not None:
                self.FrameIncrementPointer = pydicom.tag.Tag("SliceLocationVector")
                self.SliceLocationVector = [f"{v:.6g}" for v in locations]
            else:
                self.FrameIncrementPointer = pydicom.tag.Tag("PageNumberVector")
                self.PageNumberVector = list(range(1, n_frames + 1))
        self.PixelData = np.ascontiguousarray(frames if multi else frames[0]).tobytes()
        # File meta
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        self.file_meta = meta

        dirs = {Path(p).resolve().parent for p in source_paths}
        dirs |= {Path(s.filename).resolve().parent for s in srcs if isinstance(getattr(s, "filename", None), (str, Path))
                 and str(s.filename)}
        object.__setattr__(self, "source_dirs", tuple(sorted(dirs)))

    @property
    def n_frames(self) -> int:
        return int(self.get("NumberOfFrames", 1) or 1)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the capture to ``path`` (a file, or an existing folder -> ``<folder>/LungLens_SC_<uid>.dcm``).

        Refuses the folder of any source slice (and folders inside it): exports never go next to a user's
        scans.  Refuses to replace an existing file unless ``overwrite``.  The write is atomic.
        """
        target = Path(path).expanduser()
        if target.is_dir():
            target = target / f"LungLens_SC_{self.SOPInstanceUID}.dcm"
        parent = target.parent.resolve()
        for src in self.source_dirs:
            if parent == src or src in parent.parents:
                raise ExportError(f"refusing to write {target}: it is inside the source scan's folder {src}. "
                                  f"LungLens never writes next to your scans; choose another folder")
        if not parent.is_dir():
            raise ExportError(f"cannot write {target}: the folder {parent} does not exist")
        if target.exists() and not overwrite:
            raise ExportError(f"{target} already exists; choose another name or allow overwriting")
        fd, tmp = tempfile.mkstemp(prefix=".lunglens-sc-", suffix=".dcm", dir=parent)
        os.close(fd)
        try:
            self.save_as(tmp, enforce_file_format=True)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target


def _slice_locations(srcs: Sequence[Dataset]) -> list[float] | None:
    out = []
    for src in srcs:
        if "SliceLocation" in src and src.SliceLocation not in (None, ""):
            out.append(float(src.SliceLocation))
        elif "ImagePositionPatient" in src and len(src.ImagePositionPatient) == 3:
            out.append(float(src.ImagePositionPatient[2]))
        else:
            return None
    return out


def read_source_header(source: str | Path | Dataset) -> Dataset:
    """The source slice's header (pixels not read); a path is read with ``stop_before_pixels``."""
    if isinstance(source, Dataset):
        return source
    path = Path(source)
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:
        raise ExportError(f"cannot read the source slice {path} as DICOM ({exc}); a Secondary Capture needs the "
                          f"DICOM header of the scan it was made from") from exc


def heatmap_secondary_capture(sources: str | Path | Dataset | Sequence[str | Path | Dataset],
                              images: np.ndarray, heatmaps: np.ndarray, *,
                              window: tuple[float, float] = DEFAULT_WINDOW, colormap: str = "inferno",
                              opacity: float = 0.5, threshold: float = 0.0,
                              heat_range: tuple[float, float] = (0.0, 1.0), is_hu: bool = True,
                              model_name: str = "", explainer: str = "", score: float | None = None,
                              colorbar: bool = True, **kwargs) -> SecondaryCaptureImage:
    """Render slice(s) + heatmap(s) with the "NOT FOR DIAGNOSIS" label and wrap them as a Secondary Capture.

    ``images``/``heatmaps``: (H, W) for one slice, or (Z, H, W) for a multi-frame capture with one source
    per slice.  ``score`` (e.g. the scan-level COVID probability) is written on the image when given.
    Extra keyword arguments go to :class:`SecondaryCaptureImage` (UIDs, series number, description...).
    """
    images = np.asarray(images)
    heatmaps = np.asarray(heatmaps)
    if images.ndim not in (2, 3) or heatmaps.shape != images.shape:
        raise ExportError(f"images {images.shape} and heatmaps {heatmaps.shape} must both be (H, W) or (Z, H, W) "
                          f"with equal shapes")
    if isinstance(sources, (str, Path, Dataset)):
        sources = [sources]
    headers = [read_source_header(s) for s in sources]
    paths = [s for s in sources if isinstance(s, (str, Path))]
    label = " / ".join(x for x in (model_name, explainer) if x)
    lines = [NOT_FOR_DIAGNOSIS, "LungLens research output"]
    if label:
        lines.append(label)
    if score is not None:
        lines.append(f"score {float(score):.3f}")
    stack_i = images if images.ndim == 3 else images[None]
    stack_h = heatmaps if heatmaps.ndim == 3 else heatmaps[None]
    frames = []
    for img, heat in zip(stack_i, stack_h):
        rgb = render_overlay(img, heat, window=window, colormap=colormap, opacity=opacity, threshold=threshold,
                             heat_range=heat_range, is_hu=is_hu)
        frames.append(burn_in(rgb, lines, colorbar=colormap if colorbar else None, heat_range=heat_range))
    pixels = np.stack(frames) if images.ndim == 3 else frames[0]
    kwargs.setdefault("derivation_description",
                      f"{label or 'Model'} heatmap ({colormap}, opacity {opacity:g}, threshold {threshold:g}) "
                      f"burned into the CT image (window {window[0]:g}/{window[1]:g})")
    return SecondaryCaptureImage(headers, pixels, source_paths=paths, **kwargs)
