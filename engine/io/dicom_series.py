"""Assemble DICOM files of one series into a Volume in HU.

Geometry comes from ImagePositionPatient/ImageOrientationPatient (or Enhanced functional groups): slices are
sorted by their position along the slice normal, the z spacing is the median step, and gaps, non-uniform steps,
duplicated positions and mixed orientations are detected.  Each file's (or frame's) own RescaleSlope/Intercept is
applied.  Uncompressed pixel data are read straight from the file into the output array with numpy; compressed
data are decoded by pydicom's plugins (pylibjpeg, openjpeg, RLE).  Decoding runs on a small thread pool.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.io.dicom_header import DicomHeader, check_pixels
from engine.io.errors import (DuplicateSlicesError, InconsistentSeriesError, LoadCancelled, MissingSlicesError,
                              TruncatedFileError, UnreadableFileError, UnsupportedTransferSyntaxError, VolumeError)
from engine.io.volume import Volume

LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (lossy, 8-bit)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (lossy, 12-bit)",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000 (lossy)",
}
# Lossless compressed syntaxes that SimpleITK/GDCM decodes per file with the GIL released (so a thread pool
# decodes in parallel, unlike the pylibjpeg plugins); used after a per-series self-check against pydicom.
SITK_SYNTAXES = {
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",     # JPEG lossless
    "1.2.840.10008.1.2.4.80",                                # JPEG-LS lossless
    "1.2.840.10008.1.2.4.90",                                # JPEG 2000 lossless
    "1.2.840.10008.1.2.5",                                   # RLE lossless
}
ProgressFn = Callable[[float], None] | None
CancelFn = Callable[[], bool] | None


@dataclass
class _Slice:
    hdr: DicomHeader
    frame: int                   # frame index inside a multi-frame file (0 for single-frame files)
    ipp: tuple | None
    iop: tuple | None
    slope: float
    intercept: float
    pos: float = 0.0             # position along the normal (mm)


def _workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _slices(headers: list[DicomHeader]) -> list[_Slice]:
    out: list[_Slice] = []
    for h in headers:
        if h.frame_info:
            for i, fi in enumerate(h.frame_info):
                out.append(_Slice(h, i, fi.get("ipp"), fi.get("iop") or h.iop,
                                  fi.get("slope", h.slope) or 1.0, fi.get("intercept", h.intercept) or 0.0))
        else:
            for i in range(max(1, h.frames)):
                out.append(_Slice(h, i, h.ipp if i == 0 else None, h.iop, h.slope, h.intercept))
    return out


def _majority(values):
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return max(counts.items(), key=lambda kv: kv[1])[0] if counts else None


def load_dicom_series(headers: list[DicomHeader], progress: ProgressFn = None, cancel: CancelFn = None,
                      strict: bool = False) -> Volume:
    if not headers:
        raise UnreadableFileError("No DICOM image files to load")
    warnings: list[str] = []
    for h in headers:
        check_pixels(h)

    # ---- one image size per volume: keep the majority (a scout/localizer in the series is dropped, with a warning)
    size = _majority((h.rows, h.cols) for h in headers)
    odd = [h for h in headers if (h.rows, h.cols) != size]
    if odd:
        if len(odd) * 2 >= len(headers):
            sizes = sorted({(h.rows, h.cols) for h in headers})
            raise InconsistentSeriesError(
                f"The series mixes image sizes {sizes} with no clear majority; it cannot form one volume",
                headers[0].path.parent)
        warnings.append(f"{len(odd)} image(s) of a different size ({odd[0].rows}x{odd[0].cols}, e.g. "
                        f"{odd[0].path.name}) left out — a scout/localizer?")
        headers = [h for h in headers if (h.rows, h.cols) == size]
    rows, cols = size

    # ---- modality / HU
    modality = _majority(h.modality for h in headers) or ""
    if modality and modality != "CT":
        warnings.append(f"Modality is {modality}, not CT: values are shown as stored (HU semantics not guaranteed)")
    lossy = {h.transfer_syntax for h in headers if h.transfer_syntax in LOSSY_SYNTAXES}
    for ts in sorted(lossy):
        warnings.append(f"Lossy compression ({LOSSY_SYNTAXES[ts]}, {ts}): HU values are approximate; "
                        "do not use for quantitative analysis or screening")
    eight_bit = all(h.bits_stored <= 8 for h in headers)
    is_hu = not (eight_bit and not any(h.has_rescale for h in headers))
    if not is_hu:
        warnings.append("8-bit image without rescale: pre-windowed greyscale, not Hounsfield units")

    slices = _slices(headers)

    # ---- orientation and sorting along the normal
    iops = [s.iop for s in slices if s.iop is not None]
    have_geometry = len(iops) == len(slices) and all(s.ipp is not None for s in slices)
    if have_geometry:
        ref = np.asarray(_majority(tuple(round(c, 4) for c in i) for i in iops), dtype=float)
        row_dir, col_dir = ref[:3], ref[3:]
        row_dir /= np.linalg.norm(row_dir) or 1.0
        col_dir /= np.linalg.norm(col_dir) or 1.0
        normal = np.cross(row_dir, col_dir)
        n_odd = sum(1 for i in iops if np.abs(np.asarray(i) - ref).max() > 1e-3)
        if n_odd:
            warnings.append(f"Mixed orientations: {n_odd} of {len(slices)} image(s) differ from the main "
                            "ImageOrientationPatient; sorted along the main slice normal")
        for s in slices:
            s.pos = float(np.dot(np.asarray(s.ipp, float), normal))
        slices.sort(key=lambda s: (s.pos, s.hdr.instance or 0, s.frame))
    else:
        row_dir, col_dir, normal = np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])
        slices.sort(key=lambda s: (s.hdr.instance if s.hdr.instance is not None else 0, str(s.hdr.path), s.frame))
        if len(slices) > 1:
            warnings.append("No ImagePositionPatient/ImageOrientationPatient: slices ordered by InstanceNumber, "
                            "geometry unknown")
        for i, s in enumerate(slices):
            s.pos = float(i) * (headers[0].slice_thickness or 1.0)

    # ---- duplicated positions
    if have_geometry and len(slices) > 1:
        slices, dup_warn = _drop_duplicates(slices)
        warnings.extend(dup_warn)

    # ---- spacing
    pos = np.array([s.pos for s in slices])
    thickness = headers[0].slice_thickness
    if len(slices) > 1:
        steps = np.diff(pos)
        dz = float(np.median(steps))
        gaps = steps > 1.5 * dz
        if gaps.any():
            missing = int(sum(round(st / dz) - 1 for st in steps[gaps]))
            where = ", ".join(f"{pos[i]:.1f}..{pos[i + 1]:.1f} mm" for i in np.flatnonzero(gaps)[:3])
            msg = (f"{missing} slice(s) missing: gaps at {where} (spacing {dz:.3g} mm); the volume keeps the "
                   "acquired slices only")
            if strict:
                raise MissingSlicesError(msg, headers[0].path.parent)
            warnings.append(msg)
        tol = max(0.01, 0.01 * dz)
        if (np.abs(steps[~gaps] - dz) > tol).any():
            warnings.append(f"Non-uniform slice spacing: steps {steps.min():.3g}..{steps.max():.3g} mm; "
                            f"using the median {dz:.3g} mm (positions kept in Volume.slice_positions)")
    else:
        dz = float(thickness or 1.0)
    if dz <= 0:
        dz = float(thickness or 1.0)
    ps = headers[0].pixel_spacing or (headers[0].frame_info or [{}])[0].get("pixel_spacing")
    if ps is None:
        warnings.append("No PixelSpacing: 1 mm pixels assumed")
        ps = (1.0, 1.0)
    spacing = (float(dz), float(ps[0]), float(ps[1]))

    # ---- pixels
    dtype = np.float32 if is_hu else np.uint8
    out = np.empty((len(slices), rows, cols), dtype=dtype)
    _read_pixels(slices, out, is_hu, progress, cancel)

    first = slices[0]
    origin = tuple(float(c) for c in (first.ipp if first.ipp is not None else (0.0, 0.0, 0.0)))
    direction = tuple(float(c) for c in np.column_stack([row_dir, col_dir, normal]).ravel())
    meta = dict(headers[0].meta)
    tss = sorted({h.transfer_syntax for h in headers})
    meta["TransferSyntaxUID"] = tss[0] if len(tss) == 1 else tss
    vol = Volume(array=out, spacing=spacing, origin=origin, direction=direction, modality=modality or "OT",
                 is_hu=is_hu, meta=meta, source=tuple(dict.fromkeys(s.hdr.path for s in slices)),
                 series_uid=headers[0].series_uid, study_uid=headers[0].study_uid, warnings=warnings)
    vol.slice_positions = tuple(float(p) for p in pos)
    return vol


def _drop_duplicates(slices: list[_Slice]) -> tuple[list[_Slice], list[str]]:
    keep: list[_Slice] = [slices[0]]
    dropped = 0
    for s in slices[1:]:
        prev = keep[-1]
        if abs(s.pos - prev.pos) < 1e-3:
            same = (s.hdr.sop_uid and s.hdr.sop_uid == prev.hdr.sop_uid and s.frame == prev.frame) or \
                _same_pixels(prev, s)
            if same:
                dropped += 1
                continue
            raise DuplicateSlicesError(
                f"{prev.hdr.path.name} and {s.hdr.path.name} are both at position {s.pos:.2f} mm along the normal "
                "but hold different images (two acquisitions mixed in one series?); move one set to another "
                "folder", s.hdr.path)
        keep.append(s)
    warns = [f"{dropped} duplicated slice(s) (same position, same pixels) ignored"] if dropped else []
    return keep, warns


def _same_pixels(a: _Slice, b: _Slice) -> bool:
    if (a.slope, a.intercept) != (b.slope, b.intercept):
        return False
    try:
        return bool(np.array_equal(_decode(a), _decode(b)))
    except VolumeError:
        return False


# ------------------------------------------------------------------------------------------------ pixel reading
def _native_frame(h: DicomHeader, frame: int) -> np.ndarray:
    """Read one frame of native (uncompressed, not deflated) pixel data straight from the file."""
    nbytes = max(h.bits_allocated, 8) // 8
    if h.bits_allocated not in (8, 16, 32):
        raise UnsupportedTransferSyntaxError(f"BitsAllocated {h.bits_allocated} is not supported", h.path)
    dt = np.dtype(("i" if h.pixel_rep else "u") + str(nbytes)).newbyteorder(">" if h.big_endian else "<")
    n = h.rows * h.cols
    offset = h.pixel_offset + frame * n * nbytes
    try:
        with open(h.path, "rb", buffering=0) as fp:
            fp.seek(offset)
            buf = bytearray(n * nbytes)
            got = fp.readinto(buf)
    except OSError as exc:
        raise UnreadableFileError(f"Cannot read pixel data ({exc.strerror or exc})", h.path) from exc
    if got != n * nbytes:
        raise TruncatedFileError(f"The file ends {n * nbytes - got} bytes before its pixel data does "
                                 "(truncated download or copy?)", h.path)
    arr = np.frombuffer(buf, dtype=dt).reshape(h.rows, h.cols)
    if h.big_endian:
        arr = arr.astype(dt.newbyteorder("="))
    if h.bits_stored < h.bits_allocated and nbytes > 1:
        shift = h.bits_allocated - h.bits_stored
        if not arr.flags.writeable:
            arr = arr.copy()
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def _pydicom_pixels(h: DicomHeader) -> np.ndarray:
    """Decode all frames of a file with pydicom (compressed, deflated, or anything the fast path skips)."""
    import pydicom

    try:
        ds = pydicom.dcmread(h.path, force=True)
    except EOFError as exc:
        raise TruncatedFileError("The file ends before its data does (truncated download or copy?)", h.path) from exc
    except Exception as exc:
        raise UnreadableFileError(f"Cannot read the DICOM file ({type(exc).__name__}: {exc})", h.path) from exc
    if "PixelData" not in ds:
        raise TruncatedFileError("The file ends before its pixel data (truncated?)", h.path)
    try:
        arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        msg = str(exc)
        if "no pixel data handler" in msg.lower() or "unable to decode" in msg.lower() or \
                "not supported" in msg.lower() or isinstance(exc, NotImplementedError):
            raise UnsupportedTransferSyntaxError(
                f"Cannot decode pixel data in transfer syntax {h.transfer_syntax}: {msg.splitlines()[0]}",
                h.path) from exc
        raise UnreadableFileError(f"Pixel data could not be decoded ({msg.splitlines()[0]})", h.path) from exc
    except (ValueError, EOFError, IndexError) as exc:
        raise TruncatedFileError(f"Pixel data are incomplete or corrupt ({str(exc).splitlines()[0]})",
                                 h.path) from exc
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (h.rows, h.cols):
        raise UnreadableFileError(f"Decoded pixel array has shape {arr.shape}, expected frames x {h.rows}x{h.cols}",
                                  h.path)
    return arr


def _sitk_frame(h: DicomHeader) -> np.ndarray:
    """HU of a single-frame file decoded by SimpleITK/GDCM (which applies the file's own rescale)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(str(h.path))
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise UnreadableFileError(f"SimpleITK/GDCM could not decode the file ({str(exc).strip()[-200:]})",
                                  h.path) from exc
    arr = sitk.GetArrayFromImage(img)      # a copy: a view would dangle once ``img`` is freed
    if arr.ndim == 3:
        arr = arr[0]
    if arr.shape != (h.rows, h.cols):
        raise UnreadableFileError(f"Decoded image has shape {arr.shape}, expected {h.rows}x{h.cols}", h.path)
    return arr


def _sitk_chunk(hs: list[DicomHeader], dst: np.ndarray | None = None) -> np.ndarray:
    """HU of consecutive single-frame files via one SimpleITK ImageSeriesReader (less per-file overhead than
    reading each file alone; every file's own rescale is applied by GDCM; float32 output so none is truncated)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([str(h.path) for h in hs])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise UnreadableFileError(f"SimpleITK/GDCM could not decode ({str(exc).strip()[-200:]})",
                                  hs[0].path) from exc
    view = sitk.GetArrayViewFromImage(img)      # copied once, into ``dst``, while ``img`` is alive
    if view.ndim == 2:
        view = view[None]
    if view.shape != (len(hs), hs[0].rows, hs[0].cols):
        raise UnreadableFileError(f"Decoded block has shape {view.shape}", hs[0].path)
    if dst is None:
        return view.copy()
    dst[...] = view
    return dst


def _sitk_ok(s: _Slice, ref: np.ndarray) -> bool:
    """Self-check on one slice: does the SimpleITK path give exactly the pydicom-path HU?"""
    try:
        mine = np.empty(ref.shape, np.float32)
        np.multiply(ref, np.float32(s.slope), out=mine, casting="unsafe")
        mine += np.float32(s.intercept)
        return bool(np.array_equal(mine, _sitk_frame(s.hdr).astype(np.float32))
                    and np.array_equal(mine, _sitk_chunk([s.hdr])[0]))
    except Exception:
        return False


def _frame_bytes(h: DicomHeader) -> bytes:
    """The (single) frame's codestream: all fragments of the encapsulated pixel data, concatenated."""
    import struct

    with open(h.path, "rb") as fp:
        fp.seek(h.pixel_offset)
        data = fp.read()
    pos, frags = 0, []
    first = True
    while pos + 8 <= len(data):
        g, e, length = struct.unpack_from("<HHI", data, pos)
        if (g, e) == (0xFFFE, 0xE0DD):
            break
        if (g, e) != (0xFFFE, 0xE000) or pos + 8 + length > len(data):
            raise TruncatedFileError("Encapsulated pixel data are incomplete (truncated download or copy?)", h.path)
        if not first:                          # the first item is the Basic Offset Table
            frags.append(data[pos + 8:pos + 8 + length])
        first = False
        pos += 8 + length
    else:
        raise TruncatedFileError("Encapsulated pixel data end without a delimiter (truncated?)", h.path)
    return b"".join(frags)


def _direct_decoder(ts: str):
    """A faster in-process decoder for ``ts`` (holds the GIL), or None: CharLS for JPEG-LS, OpenJPEG for J2K."""
    if ts == "1.2.840.10008.1.2.4.80":
        try:
            import jpeg_ls
        except ImportError:
            return None

        def jls(h: DicomHeader) -> np.ndarray:
            arr = jpeg_ls.decode(np.frombuffer(_frame_bytes(h), np.uint8))
            return _as_stored(arr, h, jls_signed=False)
        return jls
    if ts == "1.2.840.10008.1.2.4.90":
        try:
            import openjpeg
        except ImportError:
            return None

        def j2k(h: DicomHeader) -> np.ndarray:
            arr = openjpeg.decode(_frame_bytes(h))
            return _as_stored(arr, h, jls_signed=arr.dtype.kind == "i")
        return j2k
    return None


def _as_stored(arr: np.ndarray, h: DicomHeader, jls_signed: bool) -> np.ndarray:
    """Reinterpret a decoded codestream as DICOM stored values (pydicom's sign correction rules)."""
    if arr.shape != (h.rows, h.cols):
        raise UnreadableFileError(f"Decoded image has shape {arr.shape}, expected {h.rows}x{h.cols}", h.path)
    dt = np.dtype(("i" if h.pixel_rep else "u") + str(max(h.bits_allocated, 8) // 8))
    out = arr.astype(dt.newbyteorder("="), copy=False) if arr.dtype.itemsize != dt.itemsize else arr.view(dt)
    shift = 8 * dt.itemsize - h.bits_stored
    if shift and bool(jls_signed) != bool(h.pixel_rep):
        out = out.copy() if not out.flags.writeable else out
        np.left_shift(out, shift, out=out)
        np.right_shift(out, shift, out=out)
    return out


def _sitk_eligible(h: DicomHeader) -> bool:
    return (h.transfer_syntax in SITK_SYNTAXES and h.frames == 1 and h.samples == 1 and not h.frame_info
            and h.photometric == "MONOCHROME2" and h.bits_allocated == 16)


def _decode(s: _Slice) -> np.ndarray:
    h = s.hdr
    if h.is_native and h.pixel_offset is not None and h.pixel_length is not None:
        return _native_frame(h, s.frame)
    return _pydicom_pixels(h)[s.frame]


def _read_pixels(slices: list[_Slice], out: np.ndarray, is_hu: bool, progress: ProgressFn, cancel: CancelFn) -> None:
    n = len(slices)
    # multi-frame files are decoded once and scattered
    by_file: dict[Path, list[int]] = {}
    for i, s in enumerate(slices):
        by_file.setdefault(s.hdr.path, []).append(i)
    stop = threading.Event()
    use_sitk = False
    direct = None          # GIL-holding faster decoder, used by worker 0 only (the others use SimpleITK)
    first = None
    if is_hu and len(by_file) > 1:
        first = next((s for s in slices if _sitk_eligible(s.hdr)), None)
        try:
            ref = _pydicom_pixels(first.hdr)[0] if first is not None else None
        except VolumeError:
            ref = None           # the pixel reader will report the problem with this file below
        use_sitk = ref is not None and _sitk_ok(first, ref)
        if use_sitk:
            direct = _direct_decoder(first.hdr.transfer_syntax)
            if direct is not None:
                try:
                    direct = direct if np.array_equal(direct(first.hdr), ref) else None
                except Exception:
                    direct = None
    local = threading.local()
    roles = iter(range(1 << 30))
    role_lock = threading.Lock()

    def init_worker() -> None:
        with role_lock:
            local.role = next(roles)

    # units of work: a chunk of consecutive SimpleITK-eligible files, or one file (all frames of a multi-frame file)
    units: list[list[int]] = []
    chunk: list[int] = []
    for p, idx in by_file.items():
        if use_sitk and _sitk_eligible(slices[idx[0]].hdr) and len(idx) == 1:
            if chunk and idx[0] != chunk[-1] + 1:
                units.append(chunk)
                chunk = []
            chunk.append(idx[0])
            if len(chunk) >= 12:
                units.append(chunk)
                chunk = []
        else:
            units.append(idx)
    if chunk:
        units.append(chunk)

    def put(i: int, arr: np.ndarray) -> None:
        s = slices[i]
        if is_hu:
            dst = out[i]
            np.multiply(arr, np.float32(s.slope), out=dst, casting="unsafe")
            if s.intercept:
                dst += np.float32(s.intercept)
        else:
            out[i] = arr

    def job(idx: list[int]) -> int:
        if stop.is_set():
            return 0
        h = slices[idx[0]].hdr
        if use_sitk and _sitk_eligible(h) and (len(idx) > 1 or by_file[h.path] == idx):
            if direct is not None and getattr(local, "role", 0) == 0:
                for i in idx:
                    hi = slices[i].hdr
                    if hi.transfer_syntax == first.hdr.transfer_syntax:
                        put(i, direct(hi))
                    else:
                        out[i] = _sitk_frame(hi)
                return len(idx)
            try:
                _sitk_chunk([slices[i].hdr for i in idx], out[idx[0]:idx[-1] + 1])
            except VolumeError:
                for i in idx:                      # find and name the bad file
                    out[i] = _sitk_frame(slices[i].hdr)
            return len(idx)
        if h.is_native and h.pixel_offset is not None and h.pixel_length is not None and h.frames == 1:
            put(idx[0], _native_frame(h, 0))
            return 1
        frames = _pydicom_pixels(h)
        for i in idx:
            put(i, frames[slices[i].frame])
        return len(idx)

    done = 0
    last = -1.0
    if progress:
        progress(0.0)
    paths = units
    if len(paths) == 1 or _workers() == 1:
        for p in paths:
            if cancel is not None and cancel():
                raise LoadCancelled("Loading cancelled")
            done += job(p)
            if progress and done / n - last >= 0.01:
                last = done / n
                progress(last)
        return
    with ThreadPoolExecutor(max_workers=_workers(), thread_name_prefix="lunglens-io",
                            initializer=init_worker) as pool:
        pending = set()
        it = iter(paths)
        # keep a bounded number of files in flight so cancel is quick and memory stays flat
        for p in it:
            pending.add(pool.submit(job, p))
            if len(pending) >= 4 * _workers():
                break
        try:
            while pending:
                if cancel is not None and cancel():
                    raise LoadCancelled("Loading cancelled")
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for f in finished:
                    done += f.result()
                    nxt = next(it, None)
                    if nxt is not None:
                        pending.add(pool.submit(job, nxt))
                if progress and done / n - last >= 0.01:
                    last = done / n
                    progress(last)
        except BaseException:
            stop.set()
            for f in pending:
                f.cancel()
            raise
