"""DICOM header reading for discovery and series assembly (no pixel decoding).

``read_header(path)`` returns a ``DicomHeader`` with the few fields series assembly needs, the byte offset of
uncompressed pixel data (so pixels can be read straight into numpy) and the patient-safe metadata.  A small
pure-Python tag walker handles the common uncompressed/encapsulated little-endian files fast; anything unusual
(deflated, big endian, enhanced multi-frame with functional groups, odd encodings) falls back to pydicom.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from engine.io.errors import (EmptyFileError, NoPixelDataError, TruncatedFileError, UnreadableFileError, UnsupportedImageError,
                              UnsupportedTransferSyntaxError)
from engine.io.volume import SAFE_META_KEYS

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
NATIVE_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
RETIRED_JPEG = {
    "1.2.840.10008.1.2.4.53": "JPEG Spectral Selection, Non-Hierarchical (Process 6 & 8) — retired",
    "1.2.840.10008.1.2.4.55": "JPEG Full Progression, Non-Hierarchical (Process 10 & 12) — retired",
}


class NotDicomError(Exception):
    """Internal: the file is not DICOM at all (it is skipped by discovery)."""


@dataclass
class DicomHeader:
    path: Path
    size: int = 0
    mtime_ns: int = 0
    transfer_syntax: str = "1.2.840.10008.1.2.1"
    sop_class: str = ""
    sop_uid: str = ""
    series_uid: str = ""
    study_uid: str = ""
    frame_uid: str = ""
    modality: str = ""
    rows: int = 0
    cols: int = 0
    frames: int = 1
    samples: int = 1
    photometric: str = "MONOCHROME2"
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_rep: int = 0
    ipp: tuple[float, float, float] | None = None
    iop: tuple[float, ...] | None = None
    pixel_spacing: tuple[float, float] | None = None
    slice_thickness: float | None = None
    slope: float = 1.0
    intercept: float = 0.0
    has_rescale: bool = False
    instance: int | None = None
    acquisition: int | None = None
    has_pixels: bool = False
    pixel_offset: int | None = None     # byte offset of the (native) pixel value in the file
    pixel_length: int | None = None     # its length; None when encapsulated (undefined length)
    functional_groups: bool = False     # Enhanced multi-frame: geometry/rescale live in functional groups
    is_dicomdir: bool = False
    # patient-safe metadata (SAFE_META_KEYS); computed on first use from the raw header values
    _meta: dict | None = field(default=None, compare=False, repr=False)
    _meta_src: tuple | None = field(default=None, compare=False, repr=False)
    # Enhanced multi-frame: per frame {"ipp", "iop", "slope", "intercept", "pixel_spacing", "thickness"}
    frame_info: list[dict] | None = None

    @property
    def meta(self) -> dict:
        if self._meta is None:
            self._meta = _meta_from_values(*self._meta_src) if self._meta_src is not None else {}
        return self._meta

    @meta.setter
    def meta(self, value: dict) -> None:
        self._meta = value

    @property
    def is_native(self) -> bool:
        return self.transfer_syntax in NATIVE_SYNTAXES

    @property
    def big_endian(self) -> bool:
        return self.transfer_syntax == "1.2.840.10008.1.2.2"


def _num(v, cast=float):
    if v is None or v == "":
        return None
    try:
        if isinstance(v, (list, tuple)) or (hasattr(v, "__iter__") and not isinstance(v, (str, bytes))):
            v = list(v)[0]
        return cast(v)
    except (TypeError, ValueError, IndexError):
        return None


def _floats(v, n):
    if v is None:
        return None
    try:
        vals = [float(x) for x in (v if not isinstance(v, (str, bytes)) else str(v).split("\\"))]
    except (TypeError, ValueError):
        return None
    return tuple(vals) if len(vals) == n else None


def _safe_value(v):
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        return None
    if hasattr(v, "__iter__") and not isinstance(v, str):
        vals = [_safe_value(x) for x in v]
        return [x for x in vals if x is not None]
    try:
        from pydicom.valuerep import DSfloat, IS
        if isinstance(v, (DSfloat, float)):
            return float(v)
        if isinstance(v, (IS, int)):
            return int(v)
    except ImportError:  # pragma: no cover
        pass
    return str(v).strip()


def _stat(path: Path) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UnreadableFileError(f"Cannot open file ({exc.strerror or exc}); check it exists and you may read it",
                                  path) from exc
    if st.st_size == 0:
        raise EmptyFileError("The file is empty (0 bytes): it was probably not copied completely", path)
    return st


def looks_like_dicom(prefix: bytes) -> bool:
    """True if a file's first bytes look like DICOM (Part 10 preamble, or a raw dataset starting at group 0008)."""
    if len(prefix) >= 132 and prefix[128:132] == b"DICM":
        return True
    if len(prefix) >= 8:
        group = struct.unpack("<H", prefix[:2])[0]
        elem = struct.unpack("<H", prefix[2:4])[0]
        if group in (0x0002, 0x0008) and elem < 0x0100:
            vr = prefix[4:6]
            if vr.isalpha() and vr.isupper():
                return True
            length = struct.unpack("<I", prefix[4:8])[0]
            return length < 1024
    return False


def read_header(path: str | Path) -> DicomHeader:
    """Parse one DICOM file's header.  Raises NotDicomError for non-DICOM, VolumeError subclasses for bad files."""
    path = Path(path)
    st = _stat(path)
    try:
        with open(path, "rb") as fp:
            buf = fp.read(8192)
            if not looks_like_dicom(buf):
                raise NotDicomError(str(path))
            try:
                hdr = _walk(path, st, fp, buf)
            except (_Bail, struct.error, UnicodeDecodeError, ValueError, IndexError):
                hdr = None
            except _TruncatedHeader as exc:
                raise TruncatedFileError("The file ends in the middle of its DICOM header (truncated download or "
                                         "copy?)", path) from exc
    except OSError as exc:
        raise UnreadableFileError(f"Cannot read file ({exc.strerror or exc})", path) from exc
    if hdr is None:
        hdr = _read_header_pydicom(path, st)
    return hdr


def _read_header_pydicom(path: Path, st: os.stat_result) -> DicomHeader:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
            pos = fp.tell()
    except InvalidDicomError as exc:
        raise NotDicomError(str(path)) from exc
    except EOFError as exc:
        raise TruncatedFileError("The file ends in the middle of its DICOM header (truncated download or copy?)",
                                 path) from exc
    except Exception as exc:  # pydicom raises many things on garbage
        raise UnreadableFileError(f"Not a readable DICOM file ({type(exc).__name__}: {exc})", path) from exc
    return header_from_dataset(ds, path, st, pos)


def header_from_dataset(ds, path: Path, st: os.stat_result | None, pixel_pos: int | None) -> DicomHeader:
    """Fill a DicomHeader from a pydicom Dataset read with stop_before_pixels (file at ``pixel_pos``)."""
    fm = getattr(ds, "file_meta", None)
    ts = str(getattr(fm, "TransferSyntaxUID", "") or "") if fm is not None else ""
    if not ts:
        ts = "1.2.840.10008.1.2"   # no meta header: implicit VR little endian by default
    h = DicomHeader(path=path, size=st.st_size if st else 0, mtime_ns=st.st_mtime_ns if st else 0,
                    transfer_syntax=ts)
    sop_class = str(ds.get("SOPClassUID", "") or (getattr(fm, "MediaStorageSOPClassUID", "") if fm else "") or "")
    h.sop_class = sop_class
    h.is_dicomdir = sop_class == DICOMDIR_CLASS or "DirectoryRecordSequence" in ds
    h.sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    h.series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    h.study_uid = str(ds.get("StudyInstanceUID", "") or "")
    h.frame_uid = str(ds.get("FrameOfReferenceUID", "") or "")
    h.modality = str(ds.get("Modality", "") or "")
    h.rows = _num(ds.get("Rows"), int) or 0
    h.cols = _num(ds.get("Columns"), int) or 0
    h.frames = _num(ds.get("NumberOfFrames"), int) or 1
    h.samples = _num(ds.get("SamplesPerPixel"), int) or 1
    h.photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2") or "MONOCHROME2").strip()
    h.bits_allocated = _num(ds.get("BitsAllocated"), int) or 16
    h.bits_stored = _num(ds.get("BitsStored"), int) or h.bits_allocated
    h.pixel_rep = _num(ds.get("PixelRepresentation"), int) or 0
    h.ipp = _floats(ds.get("ImagePositionPatient"), 3)
    h.iop = _floats(ds.get("ImageOrientationPatient"), 6)
    h.pixel_spacing = _floats(ds.get("PixelSpacing"), 2)
    h.slice_thickness = _num(ds.get("SliceThickness"))
    slope, inter = _num(ds.get("RescaleSlope")), _num(ds.get("RescaleIntercept"))
    h.has_rescale = slope is not None or inter is not None
    h.slope = slope if slope not in (None, 0) else 1.0
    h.intercept = inter if inter is not None else 0.0
    h.instance = _num(ds.get("InstanceNumber"), int)
    h.acquisition = _num(ds.get("AcquisitionNumber"), int)
    h.functional_groups = ("PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds)
    if h.functional_groups:
        h.frame_info = _frame_info(ds, h.frames)
        first = h.frame_info[0] if h.frame_info else {}
        h.ipp = h.ipp or first.get("ipp")
        h.iop = h.iop or first.get("iop")
        h.pixel_spacing = h.pixel_spacing or first.get("pixel_spacing")
        h.slice_thickness = h.slice_thickness or first.get("thickness")
        if first.get("slope") is not None or first.get("intercept") is not None:
            h.has_rescale = True
    meta = {}
    for key in SAFE_META_KEYS:
        if key == "TransferSyntaxUID":
            meta[key] = ts
            continue
        if key in ds:
            try:
                val = _safe_value(ds[key].value)
            except Exception:
                val = None
            if val not in (None, "", []):
                meta[key] = val
    h.meta = meta
    if pixel_pos is not None:
        _locate_pixels(h, path, pixel_pos)
    return h


def _frame_info(ds, frames: int) -> list[dict]:
    """Geometry and rescale of each frame from the Enhanced functional groups (per-frame overrides shared)."""
    def seq_item(group, name):
        if group is None or name not in group:
            return None
        seq = group[name].value
        return seq[0] if seq else None

    shared = ds.get("SharedFunctionalGroupsSequence")
    shared = shared[0] if shared else None
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    out = []
    for i in range(frames):
        pf = per[i] if i < len(per) else None
        info: dict = {}
        for grp in (shared, pf):       # per-frame last: it wins
            it = seq_item(grp, "PlanePositionSequence")
            if it is not None and _floats(it.get("ImagePositionPatient"), 3):
                info["ipp"] = _floats(it.get("ImagePositionPatient"), 3)
            it = seq_item(grp, "PlaneOrientationSequence")
            if it is not None and _floats(it.get("ImageOrientationPatient"), 6):
                info["iop"] = _floats(it.get("ImageOrientationPatient"), 6)
            it = seq_item(grp, "PixelMeasuresSequence")
            if it is not None:
                if _floats(it.get("PixelSpacing"), 2):
                    info["pixel_spacing"] = _floats(it.get("PixelSpacing"), 2)
                if _num(it.get("SliceThickness")) is not None:
                    info["thickness"] = _num(it.get("SliceThickness"))
            it = seq_item(grp, "PixelValueTransformationSequence")
            if it is not None:
                if _num(it.get("RescaleSlope")) is not None:
                    info["slope"] = _num(it.get("RescaleSlope"))
                if _num(it.get("RescaleIntercept")) is not None:
                    info["intercept"] = _num(it.get("RescaleIntercept"))
        out.append(info)
    return out


def _locate_pixels(h: DicomHeader, path: Path, pos: int) -> None:
    """Look at the element at ``pos`` (where pydicom stopped): is it Pixel Data, where is its value, is it whole?"""
    if h.transfer_syntax == "1.2.840.10008.1.2.1.99":
        # deflated: offsets refer to the inflated stream; pixels are read by pydicom
        h.has_pixels = _deflated_has_pixels(path)
        return
    try:
        with open(path, "rb") as fp:
            fp.seek(pos)
            head = fp.read(12)
    except OSError:
        return
    _parse_pixel_element(h, head, pos)


def _parse_pixel_element(h: DicomHeader, head: bytes, pos: int) -> None:
    if len(head) < 8:
        return
    big = h.big_endian
    fmt = ">HH" if big else "<HH"
    group, elem = struct.unpack(fmt, head[:4])
    if (group, elem) != (0x7FE0, 0x0010):
        return
    h.has_pixels = True
    implicit = h.transfer_syntax == "1.2.840.10008.1.2"
    if implicit:
        length = struct.unpack("<I", head[4:8])[0]
        value = pos + 8
    else:
        vr = head[4:6]
        if vr in (b"OB", b"OW", b"OF", b"OD", b"UN", b"OL", b"OV"):
            length = struct.unpack(">I" if big else "<I", head[8:12])[0]
            value = pos + 12
        else:
            length = struct.unpack(">H" if big else "<H", head[6:8])[0]
            value = pos + 8
    h.pixel_offset = value
    h.pixel_length = None if length == 0xFFFFFFFF else length


def _deflated_has_pixels(path: Path) -> bool:
    import pydicom

    try:
        return "PixelData" in pydicom.dcmread(path, force=True)
    except Exception:
        return True      # let the pixel reader report what is wrong


def check_pixels(h: DicomHeader) -> None:
    """Raise the specific error for a header whose pixels cannot be loaded (before any decoding)."""
    if h.is_dicomdir:
        raise NoPixelDataError("This is a DICOMDIR index, not an image: open the folder that contains it", h.path)
    if not h.has_pixels:
        raise NoPixelDataError("The DICOM object has no pixel data (a report, presentation state or other "
                               "non-image object); open the image series instead", h.path)
    if h.transfer_syntax in RETIRED_JPEG:
        raise UnsupportedTransferSyntaxError(
            f"Transfer syntax {h.transfer_syntax} ({RETIRED_JPEG[h.transfer_syntax]}) cannot be decoded by any "
            "installed decoder; ask for the series in an uncompressed or lossless transfer syntax", h.path)
    if h.samples != 1 or h.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedImageError(
            f"Colour image ({h.photometric}, {h.samples} samples/pixel) — a secondary capture or screenshot, "
            "not CT data in Hounsfield units", h.path)
    if h.rows <= 0 or h.cols <= 0:
        raise NoPixelDataError("The image has no Rows/Columns", h.path)
    if h.is_native and h.pixel_offset is not None:
        expected = h.rows * h.cols * h.frames * max(h.bits_allocated, 8) // 8
        avail = h.size - h.pixel_offset
        if h.pixel_length is not None and h.pixel_length < expected:
            raise TruncatedFileError(f"Pixel data holds {h.pixel_length} bytes but {h.rows}x{h.cols}x{h.frames} "
                                     f"pixels need {expected}", h.path)
        if avail < expected:
            raise TruncatedFileError(f"The file ends {expected - avail} bytes before its pixel data does "
                                     "(truncated download or copy?)", h.path)



# ------------------------------------------------------------------------------------------ fast header walker
# A minimal DICOM tag walker for the common case (Part 10 file, implicit or explicit VR little endian, native or
# encapsulated pixel data, no functional groups): ~10x faster than pydicom's parser, which matters for a
# 300-file series.  Any surprise returns None and the caller falls back to pydicom.

_LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"OD", b"OL", b"OV", b"UC", b"UR", b"SV", b"UV"}
_STR, _US, _DS, _IS = 0, 1, 2, 3
_WANTED: dict[int, tuple[str, int]] = {
    0x00080016: ("SOPClassUID", _STR), 0x00080018: ("SOPInstanceUID", _STR), 0x00080060: ("Modality", _STR),
    0x0008103E: ("SeriesDescription", _STR), 0x00081030: ("StudyDescription", _STR),
    0x00080070: ("Manufacturer", _STR), 0x00081090: ("ManufacturerModelName", _STR),
    0x00080020: ("StudyDate", _STR), 0x00180015: ("BodyPartExamined", _STR), 0x00180050: ("SliceThickness", _DS),
    0x00180060: ("KVP", _DS), 0x00181210: ("ConvolutionKernel", _STR), 0x00185100: ("PatientPosition", _STR),
    0x0020000D: ("StudyInstanceUID", _STR), 0x0020000E: ("SeriesInstanceUID", _STR),
    0x00200011: ("SeriesNumber", _IS), 0x00200012: ("AcquisitionNumber", _IS), 0x00200013: ("InstanceNumber", _IS),
    0x00200032: ("ImagePositionPatient", _DS), 0x00200037: ("ImageOrientationPatient", _DS),
    0x00200052: ("FrameOfReferenceUID", _STR), 0x00280002: ("SamplesPerPixel", _US),
    0x00280004: ("PhotometricInterpretation", _STR), 0x00280008: ("NumberOfFrames", _IS),
    0x00280010: ("Rows", _US), 0x00280011: ("Columns", _US), 0x00280030: ("PixelSpacing", _DS),
    0x00280100: ("BitsAllocated", _US), 0x00280101: ("BitsStored", _US), 0x00280103: ("PixelRepresentation", _US),
    0x00281050: ("WindowCenter", _DS), 0x00281051: ("WindowWidth", _DS), 0x00281052: ("RescaleIntercept", _DS),
    0x00281053: ("RescaleSlope", _DS), 0x00080005: ("SpecificCharacterSet", _STR),
}
_BAIL_TAGS = {0x52009229, 0x52009230, 0x00041220}   # functional groups, DICOMDIR records: leave to pydicom
_unpack_hh = struct.Struct("<HH").unpack_from
_unpack_hhi = struct.Struct("<HHI").unpack_from
_unpack_hhsh = struct.Struct("<HH2sH").unpack_from
_SHORT_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH",
              b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
_unpack_h = struct.Struct("<H").unpack_from
_unpack_i = struct.Struct("<I").unpack_from


class _Bail(Exception):
    pass


def _skip_items(buf: bytes, pos: int, implicit: bool, end: int) -> int:
    """Skip an undefined-length sequence's items starting at ``pos``; return the position after its delimiter."""
    while True:
        if pos + 8 > end:
            raise _Bail
        g, e = _unpack_hh(buf, pos)
        length = _unpack_i(buf, pos + 4)[0]
        if g != 0xFFFE:
            raise _Bail
        if e == 0xE0DD:                        # sequence delimiter
            return pos + 8
        if e != 0xE000:
            raise _Bail
        if length != 0xFFFFFFFF:
            pos += 8 + length
            continue
        pos += 8
        while True:                            # undefined-length item: elements until the item delimiter
            if pos + 8 > end:
                raise _Bail
            g, e = _unpack_hh(buf, pos)
            if g == 0xFFFE and e == 0xE00D:
                pos += 8
                break
            pos = _skip_element(buf, pos, implicit, end)


def _skip_element(buf: bytes, pos: int, implicit: bool, end: int) -> int:
    if implicit:
        length = _unpack_i(buf, pos + 4)[0]
        hdr, vr = 8, None
    else:
        vr = buf[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            length = _unpack_i(buf, pos + 8)[0]
            hdr = 12
        else:
            length = _unpack_h(buf, pos + 6)[0]
            hdr = 8
    if length == 0xFFFFFFFF:
        return _skip_items(buf, pos + hdr, implicit or vr == b"UN", end)
    return pos + hdr + length


def _fast_header(path: Path, st: os.stat_result) -> DicomHeader | None:
    try:
        with open(path, "rb") as fp:
            buf = fp.read(8192)
            return _walk(path, st, fp, buf)
    except (_Bail, struct.error, UnicodeDecodeError, ValueError, IndexError):
        return None


def _walk(path: Path, st, fp, buf: bytes) -> DicomHeader | None:
    if len(buf) < 140 or buf[128:132] != b"DICM":
        return None
    pos, end = 132, len(buf)
    ts = ""
    media_class = ""
    while pos + 8 <= end:
        g, e = _unpack_hh(buf, pos)
        if g != 0x0002:
            break
        vr = buf[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            length, hdr = _unpack_i(buf, pos + 8)[0], 12
        else:
            length, hdr = _unpack_h(buf, pos + 6)[0], 8
        val = buf[pos + hdr:pos + hdr + length]
        if e == 0x0010:
            ts = val.decode("ascii").strip("\0 ")
        elif e == 0x0002:
            media_class = val.decode("ascii").strip("\0 ")
        pos += hdr + length
    if ts == "1.2.840.10008.1.2":
        implicit = True
    elif ts and ts not in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
        implicit = False        # explicit VR little endian, and every encapsulated syntax
    else:
        return None
    vals: dict[str, object] = {}
    pixel_pos = None
    while True:
        if pos + 12 > end:
            more = fp.read(max(16384, end))
            if not more:
                if pos == end:
                    break                      # the dataset ends cleanly (an object without pixel data)
                if pos + 8 > end:
                    raise _TruncatedHeader
            else:
                buf += more
                end = len(buf)
                continue
        if implicit:
            g, e, length = _unpack_hhi(buf, pos)
            hdr, vr = 8, None
        else:
            g, e, vr, length = _unpack_hhsh(buf, pos)
            hdr = 8
            if vr in _LONG_VRS:
                length, hdr = _unpack_i(buf, pos + 8)[0], 12
            elif vr not in _SHORT_VRS:
                return None
        if g >= 0x7FE0:
            if g == 0x7FE0:
                if e == 0x0010:
                    pixel_pos = pos
                    break
            elif g != 0xFFFE:
                break
        tag = (g << 16) | e
        if tag in _BAIL_TAGS:
            return None
        if length == 0xFFFFFFFF:
            while True:
                try:
                    pos = _skip_items(buf, pos + hdr, implicit or vr == b"UN", end)
                    break
                except _Bail:
                    more = fp.read(max(16384, end))
                    if not more:
                        raise
                    buf += more
                    end = len(buf)
            continue
        vstart = pos + hdr
        if vstart + length > end:
            need = vstart + length - end
            more = fp.read(max(need, 65536))
            buf += more
            end = len(buf)
            if vstart + length > end:
                raise _TruncatedHeader
        w = _WANTED.get(tag)
        if w is not None:
            name, kind = w
            raw = buf[vstart:vstart + length]
            if kind == _US:
                if length >= 2:
                    vals[name] = _unpack_h(raw, 0)[0]
            else:
                text = raw.decode("latin-1").strip("\0 ")
                vals[name] = text
        pos = vstart + length
    h = _header_from_values(path, st, ts, media_class, vals, None)
    if pixel_pos is not None:
        if pixel_pos + 12 <= len(buf):
            _parse_pixel_element(h, buf[pixel_pos:pixel_pos + 12], pixel_pos)
        else:
            _locate_pixels(h, path, pixel_pos)
    return h


class _TruncatedHeader(Exception):
    pass


def _split(text) -> list[str]:
    return [t.strip() for t in str(text).split("\\")]


def _dsn(text, n):
    if text is None:
        return None
    try:
        parts = [float(t) for t in _split(text)]
    except ValueError:
        return None
    return tuple(parts) if len(parts) == n else None


def _ds1(text):
    if text in (None, ""):
        return None
    try:
        return float(_split(text)[0])
    except ValueError:
        return None


def _is1(text):
    v = _ds1(text)
    return None if v is None else int(round(v))


def _meta_value(name: str, text, charset: str):
    kind = _WANTED_BY_NAME[name]
    if kind == _US:
        return int(text)
    parts = _split(text)
    if kind == _DS:
        try:
            vals = [float(p) for p in parts if p != ""]
        except ValueError:
            return None
        return vals[0] if len(vals) == 1 else (vals or None)
    if kind == _IS:
        try:
            vals = [int(float(p)) for p in parts if p != ""]
        except ValueError:
            return None
        return vals[0] if len(vals) == 1 else (vals or None)
    if charset and "192" in charset:
        try:
            parts = [p.encode("latin-1").decode("utf-8") for p in parts]
        except UnicodeError:
            pass
    parts = [p for p in parts]
    return parts[0] if len(parts) == 1 else parts


_WANTED_BY_NAME = {name: kind for name, kind in _WANTED.values()}


def _meta_from_values(ts: str, vals: dict) -> dict:
    charset = str(vals.get("SpecificCharacterSet", ""))
    meta = {}
    for key in SAFE_META_KEYS:
        if key == "TransferSyntaxUID":
            meta[key] = ts
            continue
        if key in vals and vals[key] not in ("", None):
            v = _meta_value(key, vals[key], charset)
            if v not in (None, "", []):
                meta[key] = v
    return meta


def _header_from_values(path, st, ts, media_class, vals, pixel_pos) -> DicomHeader:
    h = DicomHeader(path=path, size=st.st_size, mtime_ns=st.st_mtime_ns, transfer_syntax=ts)
    h.sop_class = str(vals.get("SOPClassUID") or media_class or "")
    h.is_dicomdir = h.sop_class == DICOMDIR_CLASS
    h.sop_uid = str(vals.get("SOPInstanceUID", ""))
    h.series_uid = str(vals.get("SeriesInstanceUID", ""))
    h.study_uid = str(vals.get("StudyInstanceUID", ""))
    h.frame_uid = str(vals.get("FrameOfReferenceUID", ""))
    h.modality = str(vals.get("Modality", ""))
    h.rows = int(vals.get("Rows", 0) or 0)
    h.cols = int(vals.get("Columns", 0) or 0)
    h.frames = _is1(vals.get("NumberOfFrames")) or 1
    h.samples = int(vals.get("SamplesPerPixel", 1) or 1)
    h.photometric = str(vals.get("PhotometricInterpretation") or "MONOCHROME2")
    h.bits_allocated = int(vals.get("BitsAllocated", 16) or 16)
    h.bits_stored = int(vals.get("BitsStored", h.bits_allocated) or h.bits_allocated)
    h.pixel_rep = int(vals.get("PixelRepresentation", 0) or 0)
    h.ipp = _dsn(vals.get("ImagePositionPatient"), 3)
    h.iop = _dsn(vals.get("ImageOrientationPatient"), 6)
    h.pixel_spacing = _dsn(vals.get("PixelSpacing"), 2)
    h.slice_thickness = _ds1(vals.get("SliceThickness"))
    slope, inter = _ds1(vals.get("RescaleSlope")), _ds1(vals.get("RescaleIntercept"))
    h.has_rescale = slope is not None or inter is not None
    h.slope = slope if slope not in (None, 0) else 1.0
    h.intercept = inter if inter is not None else 0.0
    h.instance = _is1(vals.get("InstanceNumber"))
    h.acquisition = _is1(vals.get("AcquisitionNumber"))
    h._meta_src = (ts, vals)
    if pixel_pos is not None:
        _locate_pixels(h, path, pixel_pos)
    return h
