"""Datasets from a folder with ``manifest.csv`` and the one canonical way to read a 2D image file.

Manifest format (CSV, UTF-8, header row): ``file,label`` are required; ``patient_id``, ``split`` and any other
columns are optional and kept in ``Sample.extra``.  ``file`` is relative to the manifest's folder.  Labels are
matched case-insensitively against the class list; the default binary list is ``("NonCOVID", "COVID")`` so
``COVID`` is index 1 = the positive class.  A 3-class study passes its own list (``COVID,Normal,Pneumonia``).

Canonical image form (``read_image_grey``): EXIF orientation applied, palette expanded, alpha composited onto
black (CT background), colour -> ITU-R 601 luma, 16-bit -> 8-bit, result ``uint8`` H×W.  Every training,
evaluation, viewer and screening path goes through it and then through ``Preprocess`` — so a PNG-RGBA and a
JPEG-grey copy of the same picture become the same tensor and the file format cannot leak the label
(covid-ct-2d has JPEG only in NonCOVID and RGBA only in COVID).

``load_tensors`` reads + preprocesses a whole dataset once and caches the result (unit-range images at the
model's input size, float16) as a safetensors file in the user cache dir, keyed by file contents' identity
(path, size, mtime) and the ``Preprocess`` definition — never next to the data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from engine.io.errors import TruncatedFileError, UnreadableFileError, UnsupportedImageError, VolumeError
from engine.preprocess import Preprocess

BINARY_CLASSES: tuple[str, ...] = ("NonCOVID", "COVID")
POSITIVE_CLASS = "COVID"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp"}


class DatasetError(VolumeError):
    """A manifest or dataset folder is unusable (missing columns, unknown labels, missing files, ...)."""


# ---------------------------------------------------------------------------------------------- image reading
def read_image_grey(path: str | Path) -> np.ndarray:
    """Read any 2D image file into the canonical form: ``uint8`` (H, W) grey.

    Raises ``UnreadableFileError`` / ``TruncatedFileError`` / ``UnsupportedImageError`` with the file named.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise UnreadableFileError("image file not found (check the manifest's 'file' column)", path)
    try:
        with Image.open(path) as im:
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception:  # broken EXIF must not make a readable image unreadable
                pass
            return _pil_to_grey(im, path)
    except UnidentifiedImageError as exc:
        raise UnreadableFileError(f"not an image file Pillow can read ({exc.__class__.__name__})", path) from exc
    except OSError as exc:
        if "truncated" in str(exc).lower():
            raise TruncatedFileError("image file is truncated; re-export or re-download it", path) from exc
        raise UnreadableFileError(f"cannot read image: {exc}", path) from exc


def _pil_to_grey(im, path: Path) -> np.ndarray:
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("L", "1"):
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        if a.min() < 0 or a.max() > 65535:
            raise UnsupportedImageError(
                f"integer image with values {a.min():.0f}..{a.max():.0f} is not an 8/16-bit picture; "
                "load HU data as DICOM/NIfTI instead", path)
        return np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8)
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        hi = float(np.nanmax(a)) if a.size else 0.0
        if np.nanmin(a) < 0 or hi > 255:
            raise UnsupportedImageError("floating-point image outside 0..255 (HU data? use DICOM/NIfTI)", path)
        scale = 255.0 if hi <= 1.0 else 1.0
        return np.clip(np.rint(np.nan_to_num(a) * scale), 0, 255).astype(np.uint8)
    if mode in ("LA", "La"):
        a = np.asarray(im.convert("LA"), dtype=np.float32)
        return _composite(a[..., 0], a[..., 1])
    if mode in ("RGBA", "RGBa"):
        a = np.asarray(im.convert("RGBA"), dtype=np.float32)
        return _composite(_luma(a[..., :3]), a[..., 3])
    if mode in ("RGB", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        a = np.asarray(im.convert("RGB"), dtype=np.float32)
        return np.clip(np.rint(_luma(a)), 0, 255).astype(np.uint8)
    raise UnsupportedImageError(f"unsupported image mode {mode!r}", path)


def _luma(rgb: np.ndarray) -> np.ndarray:
    # ITU-R 601-2, the same weights Pillow's convert("L") uses.
    return rgb[..., 0] * (299 / 1000) + rgb[..., 1] * (587 / 1000) + rgb[..., 2] * (114 / 1000)


def _composite(grey: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Alpha-composite onto black (CT background is air = black); opaque images are unchanged."""
    return np.clip(np.rint(grey * (alpha / 255.0)), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- manifests
@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    patient_id: str
    split: str = ""
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def parse_classes(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """``None`` -> binary (NonCOVID, COVID); ``"COVID,Normal,Pneumonia"`` -> that list (must contain COVID)."""
    if spec is None or spec == "":
        return BINARY_CLASSES
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if len(names) < 2:
        raise DatasetError(f"need at least two classes, got {names!r}")
    lowered = [n.lower() for n in names]
    if len(set(lowered)) != len(lowered):
        raise DatasetError(f"duplicate class names in {names!r}")
    if POSITIVE_CLASS.lower() not in lowered:
        raise DatasetError(f"the class list must contain {POSITIVE_CLASS!r} (the positive class), got {names!r}")
    return tuple(names)


def positive_index(classes: Sequence[str]) -> int:
    return [c.lower() for c in classes].index(POSITIVE_CLASS.lower())


def _label_lookup(classes: Sequence[str]) -> dict[str, int]:
    lookup = {c.lower(): i for i, c in enumerate(classes)}
    # Common spellings of the negative class in the binary case.
    if tuple(c.lower() for c in classes) == ("noncovid", "covid"):
        for alias in ("non-covid", "non_covid", "non covid", "not covid", "notcovid"):
            lookup.setdefault(alias, 0)
    return lookup


@dataclass
class ManifestDataset:
    """Rows of one ``manifest.csv`` (optionally filtered to splits), with labels as class indices."""

    root: Path
    classes: tuple[str, ...]
    samples: list[Sample]
    manifest: Path

    @classmethod
    def from_folder(cls, root: str | Path, classes: str | Sequence[str] | None = None,
                    split: str | Iterable[str] | None = None, check_files: bool = True) -> "ManifestDataset":
        root = Path(root)
        manifest = root / "manifest.csv" if root.is_dir() else root
        if root.is_file():
            root = root.parent
        if not manifest.is_file():
            raise DatasetError(
                "no manifest.csv in this folder; a dataset folder needs a CSV with at least the columns "
                "'file,label' (file paths relative to the folder)", manifest)
        class_names = parse_classes(classes)
        lookup = _label_lookup(class_names)
        splits = None if split is None else ({split} if isinstance(split, str) else set(split))
        try:
            with open(manifest, newline="", encoding="utf-8-sig") as fh:
                reader = csv.DictReader(fh)
                header = [h.strip() for h in (reader.fieldnames or [])]
                rows = list(reader)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise DatasetError(f"cannot read manifest: {exc}", manifest) from exc
        missing = [c for c in ("file", "label") if c not in header]
        if missing:
            raise DatasetError(f"manifest lacks column(s) {missing}; found {header}", manifest)
        samples: list[Sample] = []
        bad_labels: dict[str, int] = {}
        missing_files: list[str] = []
        seen: set[str] = set()
        for n, row in enumerate(rows, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            rel = row.get("file", "")
            if not rel:
                raise DatasetError(f"line {n}: empty 'file'", manifest)
            if splits is not None and row.get("split", "") not in splits:
                continue
            label_text = row.get("label", "")
            if label_text.lower() not in lookup:
                bad_labels[label_text] = bad_labels.get(label_text, 0) + 1
                continue
            if rel in seen:
                raise DatasetError(f"line {n}: file {rel!r} listed twice", manifest)
            seen.add(rel)
            path = (root / rel)
            if check_files and not path.is_file():
                missing_files.append(rel)
                continue
            pid = row.get("patient_id", "") or f"file:{rel}"  # unknown patient -> the image is its own patient
            extra = {k: v for k, v in row.items() if k not in ("file", "label", "patient_id", "split")}
            samples.append(Sample(path=path, label=lookup[label_text.lower()], patient_id=pid,
                                  split=row.get("split", ""), extra=extra))
        if bad_labels:
            shown = ", ".join(f"{k!r}×{v}" for k, v in sorted(bad_labels.items())[:8])
            raise DatasetError(f"labels not in the class list {list(class_names)}: {shown}. Pass --classes "
                               "to use another class list", manifest)
        if missing_files:
            raise DatasetError(f"{len(missing_files)} file(s) listed but not found, e.g. {missing_files[:3]}",
                               manifest)
        if not samples:
            what = f" in split(s) {sorted(splits)}" if splits is not None else ""
            raise DatasetError(f"no samples{what}", manifest)
        return cls(root=root, classes=class_names, samples=samples, manifest=manifest)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def groups(self) -> list[str]:
        return [s.patient_id for s in self.samples]

    @property
    def splits(self) -> list[str]:
        return sorted({s.split for s in self.samples})

    def subset(self, indices: Sequence[int]) -> "ManifestDataset":
        return ManifestDataset(self.root, self.classes, [self.samples[i] for i in indices], self.manifest)

    def counts(self) -> dict[str, int]:
        lab = self.labels
        return {c: int((lab == i).sum()) for i, c in enumerate(self.classes)}

    def describe(self) -> dict:
        return {"root": str(self.root), "n": len(self), "classes": list(self.classes), "counts": self.counts(),
                "patients": len(set(self.groups)), "splits": self.splits}


# ---------------------------------------------------------------------------------------------- tensors
@dataclass
class TensorData:
    """A whole dataset in memory: ``x`` unit-range N×1×H×W float16 (pre-normalisation), ``y`` int64."""

    x: torch.Tensor
    y: torch.Tensor
    groups: list[str]
    files: list[str]
    classes: tuple[str, ...]
    preprocess: Preprocess

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, idx: Sequence[int] | np.ndarray | torch.Tensor) -> "TensorData":
        idx_t = torch.as_tensor(np.asarray(idx, dtype=np.int64))
        il = idx_t.tolist()
        return TensorData(self.x[idx_t], self.y[idx_t], [self.groups[i] for i in il],
                          [self.files[i] for i in il], self.classes, self.preprocess)

    @staticmethod
    def concat(parts: Sequence["TensorData"]) -> "TensorData":
        first = parts[0]
        for p in parts[1:]:
            if p.classes != first.classes or p.x.shape[1:] != first.x.shape[1:]:
                raise DatasetError("cannot combine datasets with different classes or input sizes")
        return TensorData(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]),
                          sum((p.groups for p in parts), []), sum((p.files for p in parts), []),
                          first.classes, first.preprocess)


def default_cache_dir() -> Path:
    env = os.environ.get("LUNGLENS_CACHE")
    if env:
        return Path(env) / "datasets"
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("lunglens")) / "datasets"


def _cache_key(dataset: ManifestDataset, preprocess: Preprocess) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(preprocess.to_dict(), sort_keys=True, default=str).encode())
    h.update(json.dumps(list(dataset.classes)).encode())
    for s in dataset.samples:
        st = s.path.stat()
        h.update(f"{s.path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{s.label}|{s.patient_id}\n".encode())
    h.update(b"canonical-v1")
    return h.hexdigest()[:24]


def load_tensors(dataset: ManifestDataset, preprocess: Preprocess, *, cache: bool | str | Path = True,
                 progress: bool = False) -> TensorData:
    """Canonical-read + preprocess every image once (cached as safetensors outside the dataset folder)."""
    from safetensors.torch import load_file, save_file

    if preprocess.spatial_dims != 2:
        raise DatasetError("load_tensors is the 2D path (use engine.train.data3d for volumes)")
    cache_dir = default_cache_dir() if cache is True else (Path(cache) if cache else None)
    key = _cache_key(dataset, preprocess)
    target = cache_dir / f"{key}.safetensors" if cache_dir else None
    if target is not None and target.is_file():
        try:
            t = load_file(str(target))
            if t["x"].shape[0] == len(dataset):
                return TensorData(t["x"], t["y"], dataset.groups, [str(s.path) for s in dataset.samples],
                                  dataset.classes, preprocess)
        except Exception:  # a corrupt cache entry is rebuilt, never trusted
            pass
    images = []
    iterator: Iterable = dataset.samples
    if progress:
        from tqdm import tqdm
        iterator = tqdm(dataset.samples, desc="reading images", unit="img", mininterval=1.0)
    for s in iterator:
        grey = read_image_grey(s.path)
        images.append(preprocess.unit_image(grey, is_hu=False)[0][0].to(torch.float16))
    x = torch.stack(images).contiguous()
    y = torch.as_tensor(dataset.labels)
    if target is not None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            save_file({"x": x, "y": y}, str(tmp), metadata={"root": str(dataset.root), "n": str(len(y))})
            os.replace(tmp, target)
        except OSError as exc:
            warnings.warn(f"could not write dataset cache {target}: {exc}")
    return TensorData(x, y, dataset.groups, [str(s.path) for s in dataset.samples], dataset.classes, preprocess)


def load_folder(root: str | Path, preprocess: Preprocess, *, classes: str | Sequence[str] | None = None,
                split: str | Iterable[str] | None = None, cache: bool | str | Path = True,
                progress: bool = False) -> TensorData:
    return load_tensors(ManifestDataset.from_folder(root, classes=classes, split=split), preprocess,
                        cache=cache, progress=progress)
