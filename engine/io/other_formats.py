"""Non-DICOM readers: NIfTI / NRRD / MHA (SimpleITK) and 2-D PNG/JPEG slices (Pillow)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from engine.io.errors import (TruncatedFileError, UnreadableFileError, UnsupportedImageError)
from engine.io.volume import SeriesInfo, Volume

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
IMAGE2D_SUFFIXES = (".png", ".jpg", ".jpeg")


def kind_of(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    if name.endswith(IMAGE2D_SUFFIXES):
        return "image2d"
    return None


def pseudo_uid(path: Path) -> str:
    return "file:" + hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:20]


def _sitk_error(exc: Exception, path: Path):
    msg = str(exc).strip().splitlines()
    text = " ".join(m.strip() for m in msg if m.strip())[-300:]
    low = text.lower()
    if "truncat" in low or "unexpected end" in low or "premature" in low or "short" in low or "end of file" in low:
        return TruncatedFileError(f"The image file is incomplete ({text})", path)
    return UnreadableFileError(f"Cannot read the image file: {text}", path)


def itk_info(path: Path, kind: str) -> SeriesInfo:
    """Header-only SeriesInfo for a NIfTI/NRRD/MHA file."""
    import SimpleITK as sitk

    if path.stat().st_size == 0:
        from engine.io.errors import EmptyFileError
        raise EmptyFileError("The file is empty (0 bytes)", path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise _sitk_error(exc, path) from exc
    size = reader.GetSize()
    dims = len(size)
    z = size[2] if dims >= 3 else 1
    shape = (int(z), int(size[1]) if dims >= 2 else 1, int(size[0]))
    warnings = []
    if dims > 3:
        warnings.append(f"{dims}-D image: only the first 3-D volume is shown")
    if reader.GetNumberOfComponents() != 1:
        warnings.append(f"{reader.GetNumberOfComponents()} components per voxel (colour/vector image)")
    return SeriesInfo(uid=pseudo_uid(path), kind=kind, paths=(path,), n_slices=shape[0], shape=shape,
                      modality="", description=path.name, warnings=tuple(warnings))


def _canonical(arr: np.ndarray, spacing, origin, direction):
    """Flip axes of an axis-aligned volume so its direction matrix has a positive diagonal (LPS, z up)."""
    d = np.asarray(direction, float).reshape(3, 3)
    o = np.asarray(origin, float)
    # only when each axis maps to the same LPS axis (no permutation); oblique/permuted stays as is
    if not all(abs(d[i, i]) > 0.9 for i in range(3)):
        return arr, spacing, tuple(o), tuple(d.ravel())
    sp_xyz = (spacing[2], spacing[1], spacing[0])
    for ax_xyz in range(3):
        if d[ax_xyz, ax_xyz] < 0:
            arr_axis = 2 - ax_xyz
            n = arr.shape[arr_axis]
            o = o + d[:, ax_xyz] * sp_xyz[ax_xyz] * (n - 1)
            d[:, ax_xyz] = -d[:, ax_xyz]
            arr = np.flip(arr, axis=arr_axis)
    return arr, spacing, tuple(float(c) for c in o), tuple(float(c) for c in d.ravel())


def nifti_expected_bytes(header: bytes) -> int | None:
    """vox_offset + voxel bytes from a NIfTI-1/-2 header (either byte order); None if it is not one."""
    import struct

    for end in "<>":
        (size,) = struct.unpack(end + "i", header[:4])
        if size == 348 and len(header) >= 348:
            dims = struct.unpack(end + "8h", header[40:56])
            (bitpix,) = struct.unpack(end + "h", header[72:74])
            (offset,) = struct.unpack(end + "f", header[108:112])
        elif size == 540 and len(header) >= 540:
            (bitpix,) = struct.unpack(end + "h", header[14:16])
            dims = struct.unpack(end + "8q", header[16:80])
            (offset,) = struct.unpack(end + "q", header[168:176])
        else:
            continue
        n = int(np.prod([max(1, int(d)) for d in dims[1:1 + max(0, min(7, int(dims[0])))]]))
        return int(offset) + n * max(1, int(bitpix)) // 8
    return None


def check_nifti_complete(path: Path) -> None:
    """Raise TruncatedFileError if a NIfTI file holds fewer bytes than its header promises.

    SimpleITK silently zero-fills a truncated .nii.gz, so a cut-off download would screen as an empty scan.
    Uncompressed: compare the file size.  Gzip: the trailer's ISIZE (uncompressed size mod 2**32) must match,
    and the stream must end cleanly (cheap: reads the header and the last 8 bytes only).
    """
    import gzip
    import struct

    gz = path.name.lower().endswith(".gz")
    try:
        if gz:
            with gzip.open(path, "rb") as fh:
                header = fh.read(540)
        else:
            with open(path, "rb") as fh:
                header = fh.read(540)
    except (OSError, EOFError) as exc:
        raise TruncatedFileError(f"The NIfTI file is incomplete or not gzip data ({exc})", path) from exc
    expected = nifti_expected_bytes(header)
    if expected is None:
        return
    if not gz:
        actual = path.stat().st_size
        if actual < expected:
            raise TruncatedFileError(f"The NIfTI file is incomplete: {actual} of {expected} bytes", path)
        return
    with open(path, "rb") as fh:
        fh.seek(-4, 2)
        (isize,) = struct.unpack("<I", fh.read(4))
    if isize != expected % (1 << 32):
        raise TruncatedFileError("The compressed NIfTI file is incomplete (its gzip trailer does not match the "
                                 f"{expected} bytes the header describes); copy or download it again", path)


def load_itk(path: Path, kind: str) -> Volume:
    import SimpleITK as sitk

    info = itk_info(path, kind)
    if kind == "nifti":
        check_nifti_complete(path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise _sitk_error(exc, path) from exc
    warnings = list(info.warnings)
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise UnsupportedImageError(f"{img.GetNumberOfComponentsPerPixel()}-component (colour/vector) image: "
                                    "LungLens needs a single-channel CT volume", path)
    if img.GetDimension() > 3:
        size = list(img.GetSize())
        idx = [0] * len(size)
        size[3:] = [0] * (len(size) - 3)
        img = sitk.Extract(img, size, idx)
    arr = sitk.GetArrayViewFromImage(img)      # a view: converted (one copy) below while ``img`` is alive
    if img.GetDimension() == 2:
        arr = arr[None]
        sp = img.GetSpacing()
        spacing = (1.0, float(sp[1]), float(sp[0]))
        origin = (*map(float, img.GetOrigin()), 0.0)
        d2 = img.GetDirection()
        direction = (d2[0], d2[1], 0.0, d2[2], d2[3], 0.0, 0.0, 0.0, 1.0)
    else:
        sp = img.GetSpacing()
        spacing = (float(sp[2]), float(sp[1]), float(sp[0]))
        origin = tuple(float(c) for c in img.GetOrigin())
        direction = tuple(float(c) for c in img.GetDirection())
    is_hu = arr.dtype != np.uint8
    arr, spacing, origin, direction = _canonical(arr, spacing, origin, direction)   # flips are views
    if not is_hu:
        warnings.append("8-bit image: pre-windowed greyscale, not Hounsfield units")
        arr = np.array(arr, dtype=np.uint8, order="C", copy=True)     # always a copy: the view dies with img
    else:
        arr = np.array(arr, dtype=np.float32, order="C", copy=True)
        if arr.size and np.nanmin(arr) >= 0 and np.nanmax(arr) > 2000:
            warnings.append("Values are all >= 0: this may be raw stored values rather than HU")
    del img
    return Volume(array=arr, spacing=spacing, origin=origin, direction=direction,
                  modality="CT" if is_hu else "OT", is_hu=is_hu, meta={"SeriesDescription": path.name},
                  source=(path,), series_uid=info.uid, warnings=warnings)


def image2d_info(path: Path) -> SeriesInfo:
    from PIL import Image, UnidentifiedImageError

    if path.stat().st_size == 0:
        from engine.io.errors import EmptyFileError
        raise EmptyFileError("The file is empty (0 bytes)", path)
    try:
        with Image.open(path) as im:
            w, h = im.size
            mode = im.mode
    except (UnidentifiedImageError, OSError) as exc:
        raise UnreadableFileError(f"Not a readable PNG/JPEG image ({exc})", path) from exc
    warnings = ("8-bit image: pre-windowed greyscale, not Hounsfield units",)
    if mode not in ("L", "I;16", "I", "LA", "P", "1"):
        warnings += (f"{mode} colour image: converted to greyscale",)
    return SeriesInfo(uid=pseudo_uid(path), kind="image2d", paths=(path,), n_slices=1, shape=(1, h, w),
                      modality="OT", description=path.name, warnings=warnings)


def load_image2d(path: Path) -> Volume:
    from PIL import Image, UnidentifiedImageError

    info = image2d_info(path)
    warnings = list(info.warnings)
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(im).astype(np.float32)
                warnings = ["16-bit image without calibration: values are not Hounsfield units"]
            else:
                if im.mode not in ("L",):
                    rgb = np.asarray(im.convert("RGB"))
                    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
                        warnings.append("colour channels differ: converted to luminance")
                    im = im.convert("L")
                arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        if "truncated" in str(exc).lower():
            raise TruncatedFileError(f"The image file is incomplete ({exc})", path) from exc
        raise UnreadableFileError(f"Not a readable PNG/JPEG image ({exc})", path) from exc
    warnings.append("2-D image without geometry: 1 mm pixels assumed")
    return Volume(array=np.ascontiguousarray(arr[None]), spacing=(1.0, 1.0, 1.0), modality="OT", is_hu=False,
                  meta={"SeriesDescription": path.name}, source=(path,), series_uid=info.uid, warnings=warnings)
