"""3-D datasets: CT volumes listed in a ``manifest.csv``, fed through the model's one ``Preprocess`` (3D path).

Manifest (CSV, UTF-8, header): ``file,label`` required; ``patient_id``, ``split``, ``mask`` (a lesion-mask
volume on the same grid, used for localisation), ``lung_mask`` optional; other columns are kept in ``extra``.  ``file`` is
relative to the manifest's folder and may be anything ``engine.io.load_volume`` reads (NIfTI, NRRD/MHA, a DICOM
series folder) **or a folder of 2-D slice images** (CC-CCII style PNG/JPG slices, natural-sorted by name, read as
an 8-bit stack).  Real collections drop in with a manifest and, where their label names differ, a label map:

* MosMedData (NIfTI, CT-0 … CT-4):  ``label_map={"CT-0": "NonCOVID", "CT-1": "COVID", ..., "CT-4": "COVID"}``
* CC-CCII (slice folders, NCP/CP/Normal):  ``classes=("CP", "COVID", "Normal")``, ``label_map={"NCP": "COVID"}``

``make_phantom_dataset`` writes such a folder from ``engine.phantom`` (NIfTI volumes + exact lesion masks):
varied anatomy/noise/grid/slice spacing, lesion count/size/location/type, and lesion-free cases, with slice
spacing and noise drawn independently of the label.

``VolumeDataset`` loads each volume once (kept in memory as int16 HU / uint8) and yields network inputs:
random slice sampling + flips when ``train`` (seeded by (seed, epoch, index), so a resumed run sees the same
augmentation), symmetrical sampling otherwise.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from engine.io.errors import VolumeError

BINARY_CLASSES: tuple[str, ...] = ("NonCOVID", "COVID")
POSITIVE_CLASS = "COVID"
SLICE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
MOSMED_LABEL_MAP = {"CT-0": "NonCOVID", "CT-1": "COVID", "CT-2": "COVID", "CT-3": "COVID", "CT-4": "COVID"}
CCCCII_LABEL_MAP = {"NCP": "COVID"}


class Dataset3DError(VolumeError):
    """A 3-D manifest or dataset folder is unusable (missing columns, unknown labels, missing files, ...)."""


@dataclass(frozen=True)
class VolumeRecord:
    path: Path
    label: int
    label_name: str
    patient_id: str
    split: str = ""
    mask: Path | None = None                   # lesion mask volume (localisation ground truth)
    lung: Path | None = None                   # lung mask volume (optional; energy-in-mask reference region)
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def parse_label_map(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"CT-0=NonCOVID,CT-1=COVID"`` / a dict / the presets ``"mosmed"`` and ``"ccccii"`` -> dict."""
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        return {str(k): str(v) for k, v in spec.items()}
    presets = {"mosmed": MOSMED_LABEL_MAP, "ccccii": CCCCII_LABEL_MAP, "cc-ccii": CCCCII_LABEL_MAP}
    if spec.lower() in presets:
        return dict(presets[spec.lower()])
    out = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise Dataset3DError(f"label map entry {part!r} is not of the form SOURCE=CLASS")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_classes(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    if spec is None or spec == "":
        return BINARY_CLASSES
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if len(names) < 2 or len({n.lower() for n in names}) != len(names):
        raise Dataset3DError(f"need at least two distinct class names, got {names!r}")
    return tuple(names)


def read_manifest3d(root: str | Path, *, classes: str | Sequence[str] | None = None,
                    label_map: str | Mapping[str, str] | None = None,
                    split: str | Iterable[str] | None = None) -> tuple[list[VolumeRecord], tuple[str, ...]]:
    """Rows of ``root/manifest.csv`` as ``VolumeRecord``s (labels as indices into the class list)."""
    root = Path(root)
    manifest = root / "manifest.csv" if root.is_dir() else root
    root = manifest.parent
    if not manifest.is_file():
        raise Dataset3DError("no manifest.csv here; a 3-D dataset folder needs a CSV with the columns "
                             "'file,label' (+ optional patient_id, split, mask), paths relative to the folder",
                             manifest)
    names = parse_classes(classes)
    lookup = {c.lower(): i for i, c in enumerate(names)}
    lmap = {k.lower(): v for k, v in parse_label_map(label_map).items()}
    splits = None if split is None else ({split} if isinstance(split, str) else set(split))
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Dataset3DError(f"cannot read manifest: {exc}", manifest) from exc
    missing = [c for c in ("file", "label") if c not in header]
    if missing:
        raise Dataset3DError(f"manifest lacks column(s) {missing}; found {header}", manifest)
    records: list[VolumeRecord] = []
    bad: dict[str, int] = {}
    absent: list[str] = []
    for n, row in enumerate(rows, start=2):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        if splits is not None and row.get("split", "") not in splits:
            continue
        rel = row.get("file", "")
        if not rel:
            raise Dataset3DError(f"line {n}: empty 'file'", manifest)
        label_text = lmap.get(row["label"].lower(), row["label"])
        if label_text.lower() not in lookup:
            bad[row["label"]] = bad.get(row["label"], 0) + 1
            continue
        path = root / rel
        if not path.exists():
            absent.append(rel)
            continue
        mask = root / row["mask"] if row.get("mask") else None
        lung = root / row["lung_mask"] if row.get("lung_mask") else None
        records.append(VolumeRecord(
            path=path, label=lookup[label_text.lower()], label_name=names[lookup[label_text.lower()]],
            patient_id=row.get("patient_id") or f"file:{rel}", split=row.get("split", ""), mask=mask, lung=lung,
            extra={k: v for k, v in row.items()
                   if k not in ("file", "label", "patient_id", "split", "mask", "lung_mask")}))
    if bad:
        shown = ", ".join(f"{k!r}×{v}" for k, v in sorted(bad.items())[:8])
        raise Dataset3DError(f"labels not in the class list {list(names)}: {shown}; pass classes= and/or a "
                             "label map (e.g. 'mosmed' for CT-0..CT-4)", manifest)
    if absent:
        raise Dataset3DError(f"{len(absent)} file(s) listed but not found, e.g. {absent[:3]}", manifest)
    if not records:
        raise Dataset3DError("no volumes" + (f" in split(s) {sorted(splits)}" if splits else ""), manifest)
    return records, names


# ---------------------------------------------------------------------------------------------- reading
def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def read_slice_folder(path: str | Path):
    """A folder of 2-D slice images (CC-CCII / MosMed-PNG style) -> an 8-bit ``Volume`` (no HU, spacing 1 mm
    as a placeholder: such stacks are sampled as they are, not resampled)."""
    from engine.io.volume import Volume
    from engine.train.data import read_image_grey

    path = Path(path)
    files = sorted((p for p in path.iterdir() if p.suffix.lower() in SLICE_SUFFIXES), key=lambda p: _natural_key(p.name))
    if not files:
        raise Dataset3DError("folder holds no slice images (png/jpg/bmp/tif)", path)
    slices = [read_image_grey(p) for p in files]
    shapes = {s.shape for s in slices}
    if len(shapes) != 1:
        raise Dataset3DError(f"slices differ in size {sorted(shapes)[:3]}; cannot stack them into a volume", path)
    return Volume(array=np.stack(slices), spacing=(1.0, 1.0, 1.0), is_hu=False, source=tuple(files))


def load_record_volume(path: str | Path):
    """Any volume a manifest may name: slice-image folders here, everything else through ``engine.io``."""
    from engine.io import load_volume

    path = Path(path)
    if path.is_dir() and any(p.suffix.lower() in SLICE_SUFFIXES for p in path.iterdir()) and \
            not any(p.suffix.lower() in (".dcm", "") and p.is_file() for p in path.iterdir()):
        return read_slice_folder(path)
    return load_volume(path)


def load_mask(path: str | Path, shape: tuple[int, int, int]) -> np.ndarray:
    """A lesion mask volume (any label > 0), checked against the image grid."""
    from engine.io import load_volume

    arr = np.asarray(load_volume(path).array) > 0
    if arr.shape != tuple(shape):
        raise Dataset3DError(f"mask shape {arr.shape} differs from its volume's {tuple(shape)}", path)
    return arr


# ---------------------------------------------------------------------------------------------- dataset
class VolumeDataset:
    """Volumes of a manifest as network inputs through ``pre`` (an ``engine.preprocess.Preprocess``, 3D)."""

    def __init__(self, records: Sequence[VolumeRecord], pre: Any, classes: Sequence[str], *, train: bool,
                 seed: int = 0, progress: Callable[[int, int], None] | None = None,
                 box_cache: str | Path | None = None) -> None:
        if getattr(pre, "spatial_dims", 3) != 3:
            raise ValueError("VolumeDataset needs a 3D Preprocess (spatial_dims=3)")
        self.records = list(records)
        self.pre = pre
        self.classes = tuple(classes)
        self.train = train
        self.seed = int(seed)
        self._volumes: list[tuple[np.ndarray, tuple[float, float, float], bool] | None] = [None] * len(records)
        self._boxes: dict[int, tuple[int, int, int, int] | None] = {}
        self._progress = progress
        self._box_cache = LungBoxCache(box_cache) if box_cache else None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    def preload(self) -> "VolumeDataset":
        for i in range(len(self)):
            self.volume(i)
            self.crop_box(i)
            if self._progress is not None:
                self._progress(i + 1, len(self))
        return self

    def volume(self, i: int) -> tuple[np.ndarray, tuple[float, float, float], bool]:
        cached = self._volumes[i]
        if cached is None:
            vol = load_record_volume(self.records[i].path)
            arr = np.asarray(vol.array)
            if vol.is_hu and np.all(np.mod(arr[:: max(1, arr.shape[0] // 4)], 1) == 0):
                arr = np.clip(arr, -32768, 32767).astype(np.int16)
            cached = (arr, tuple(float(s) for s in vol.spacing), bool(vol.is_hu))
            self._volumes[i] = cached
        return cached

    def rng_for(self, i: int, epoch: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(epoch), int(i)])

    def crop_box(self, i: int) -> tuple[int, int, int, int] | None:
        """The in-plane lung box of volume ``i`` (computed once; None when ``lung_crop`` is off)."""
        if not getattr(self.pre, "lung_crop", False):
            return None
        if i not in self._boxes:
            from engine.preprocess.definition import lung_bounding_box
            from engine.preprocess.volume3d import square_box

            cached = self._box_cache.get(self.records[i].path) if self._box_cache else None
            if cached is not None:
                self._boxes[i] = cached
            else:
                arr, _, is_hu = self.volume(i)
                box = square_box(lung_bounding_box(arr), arr.shape[1], arr.shape[2]) if is_hu else None
                self._boxes[i] = box
                if self._box_cache is not None and box is not None:
                    self._box_cache.put(self.records[i].path, box)
        return self._boxes[i]

    def item(self, i: int, epoch: int = 0, train: bool | None = None) -> tuple[torch.Tensor, int, Any]:
        """(C×D×H×W input, label, VolumeGeometry); ``train`` overrides the dataset's mode for this call."""
        from engine.preprocess.volume3d import volume_tensor

        train = self.train if train is None else train
        arr, spacing, is_hu = self.volume(i)
        rng = self.rng_for(i, epoch) if train else None
        x, geom = volume_tensor(self.pre, arr, spacing, is_hu=is_hu, train=train, rng=rng, crop_box=self.crop_box(i))
        return x[0], self.records[i].label, geom

    def batch(self, indices: Sequence[int], epoch: int = 0,
              train: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for i in indices:
            x, y, _ = self.item(int(i), epoch, train)
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


class LungBoxCache:
    """On-disk cache of lung crop boxes (JSON), keyed by file identity (path, size, mtime) and the source of
    ``lung_bounding_box`` — computing a box costs ~1 s per volume, paid once per dataset instead of per run."""

    def __init__(self, path: str | Path) -> None:
        import hashlib
        import inspect

        from engine.preprocess.definition import lung_bounding_box
        from engine.preprocess.volume3d import square_box

        self.path = Path(path)
        src = inspect.getsource(lung_bounding_box) + inspect.getsource(square_box)
        self.version = hashlib.sha256(src.encode()).hexdigest()[:12]
        try:
            self.data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self.data = {}

    def _key(self, file: Path) -> str:
        st = Path(file).stat()
        return f"{Path(file).resolve()}|{st.st_size}|{st.st_mtime_ns}|{self.version}"

    def get(self, file: Path) -> tuple[int, int, int, int] | None:
        box = self.data.get(self._key(file))
        return tuple(box) if box else None  # type: ignore[return-value]

    def put(self, file: Path, box: Sequence[int]) -> None:
        self.data[self._key(file)] = [int(v) for v in box]
        try:   # merge with what other datasets/processes wrote meanwhile
            self.data = {**json.loads(self.path.read_text(encoding="utf-8")), **self.data}
        except (OSError, ValueError):
            pass
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.data), encoding="utf-8")
        tmp.replace(self.path)


def default_box_cache() -> Path:
    """``<user cache>/lunglens/lung_boxes.json`` (never next to the data)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lunglens")) / "lung_boxes.json"


def split_indices(n: int, fraction: float, seed: int, labels: Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """Stratified random split of range(n) into (first, second) with ``fraction`` in the first part."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(n, dtype=int) if labels is None else np.asarray(labels)
    a: list[int] = []
    b: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(fraction * len(idx)))
        a += idx[:k].tolist()
        b += idx[k:].tolist()
    return sorted(a), sorted(b)


# ---------------------------------------------------------------------------------------------- phantoms
PHANTOM_DEFAULTS: dict[str, Any] = {
    "inplane": (112, 144),           # in-plane matrix (square), drawn per case
    "fov_mm": (300.0, 420.0),        # field of view (in-plane spacing = fov / matrix)
    "extent_mm": (260.0, 340.0),     # cranio-caudal coverage
    "slice_mm": (1.25, 2.5, 3.0, 5.0, 8.0),   # slice spacings, drawn independently of the label
    "lesions": (1, 6),               # lesion count range for positives
    "lesion_sampler": "phantom",     # 'phantom' (engine.phantom's own sizes) | 'burden' (radius_mm below)
    "radius_mm": (6.0, 30.0),        # 'burden' sampler: ground-glass semi-axes (consolidation: ×0.7)
    "ggo_fraction": 0.7,             # 'burden' sampler: share of ground-glass lesions
    "positive_fraction": 0.5,
    "min_lesion_ml": 1.0,            # positives whose visible lesion volume is smaller are redrawn
    "noise_hu": (6.0, 22.0),
}


def sample_lesions(lung: np.ndarray, spacing: Sequence[float], n: int, rng: np.random.Generator,
                   radius_mm: tuple[float, float] = (6.0, 30.0), ggo_fraction: float = 0.7) -> list[Any]:
    """``n`` COVID-like lesions inside ``lung`` (z, y, x mask): centres favour peripheral, posterior and lower
    lung (the typical COVID-19 distribution), semi-axes drawn log-uniformly from ``radius_mm`` with ±30 %
    anisotropy; ground-glass (HU -600..-300) or consolidation (-20..+50, 0.7× smaller)."""
    from engine.phantom import LESION_HU_RANGE, LesionSpec

    idx = np.flatnonzero(lung)
    if n <= 0 or idx.size == 0:
        return []
    zi, yi, xi = np.unravel_index(idx, lung.shape)
    zr = (zi - zi.min()) / max(np.ptp(zi), 1)                      # 0 = lowest lung slice
    yr = (yi - yi.min()) / max(np.ptp(yi), 1)                      # 1 = most posterior (LPS: y grows posterior)
    xc = (xi.min() + xi.max()) / 2.0
    periph = np.abs(xi - xc) / max((xi.max() - xi.min()) / 2.0, 1)
    w = (0.5 + yr) * (1.4 - zr) * (0.3 + periph)
    w /= w.sum()
    specs = []
    for p in rng.choice(idx.size, size=n, replace=True, p=w):
        kind = "ggo" if rng.uniform() < ggo_fraction else "consolidation"
        base = float(np.exp(rng.uniform(np.log(radius_mm[0]), np.log(radius_mm[1]))))
        if kind == "consolidation":
            base *= 0.7
        radii = tuple(float(max(base * rng.uniform(0.7, 1.3), 0.75 * s)) for s in spacing)
        lo, hi = LESION_HU_RANGE[kind]
        hu = float(rng.uniform(lo + 0.15 * (hi - lo), hi - 0.15 * (hi - lo)))
        specs.append(LesionSpec(center=(int(zi[p]), int(yi[p]), int(xi[p])), radii_mm=radii, kind=kind, hu=hu))
    return specs


def make_phantom_dataset(out_dir: str | Path, n: int, *, seed: int = 0,
                         splits: Mapping[str, float] | None = None, options: Mapping[str, Any] | None = None,
                         progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``n`` phantom chest CTs (NIfTI, HU) + exact lesion masks + ``manifest.csv`` into ``out_dir``.

    Labels are ``COVID`` (1–6 random COVID-like lesions: ground-glass or consolidation, peripheral/posterior/
    lower-lobe preferred, 5–25 mm semi-axes) or ``NonCOVID`` (lesion-free).  Anatomy, noise, matrix, field of
    view, coverage and slice spacing vary per case and are drawn independently of the label.  Each case is its
    own patient; ``splits`` ({"train": 0.7, "val": 0.1, "test": 0.2}) are assigned stratified by label.
    """
    from engine.phantom import make_phantom, write_nifti
    from engine.io.volume import Volume

    opt = {**PHANTOM_DEFAULTS, **dict(options or {})}
    splits = dict(splits or {"train": 0.7, "val": 0.1, "test": 0.2})
    out = Path(out_dir)
    (out / "volumes").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < float(opt["positive_fraction"])).astype(int)
    # stratified split assignment
    split_of = [""] * n
    names = list(splits)
    for c in (0, 1):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        cuts = np.cumsum([int(round(splits[s] * len(idx))) for s in names])
        cuts[-1] = len(idx)
        start = 0
        for s, end in zip(names, cuts):
            for i in idx[start:end]:
                split_of[i] = s
            start = end
    rows = []
    t0 = time.time()
    for i in range(n):
        case_seed = int(rng.integers(0, 2**31 - 1))
        crng = np.random.default_rng(case_seed)
        matrix = int(crng.integers(opt["inplane"][0] // 8, opt["inplane"][1] // 8 + 1) * 8)
        fov = float(crng.uniform(*opt["fov_mm"]))
        sz = float(crng.choice(opt["slice_mm"]))
        extent = float(crng.uniform(*opt["extent_mm"]))
        nz = max(8, int(round(extent / sz)))
        spacing = (sz, fov / matrix, fov / matrix)
        anatomy = {"noise_hu": float(crng.uniform(*opt["noise_hu"])),
                   "body_scale": float(crng.uniform(0.85, 1.1)), "fit_fov": True}
        positive = bool(labels[i])
        healthy = None
        for attempt in range(20):
            k = int(crng.integers(opt["lesions"][0], opt["lesions"][1] + 1)) if positive else 0
            lesions: Any = k
            if positive and opt["lesion_sampler"] == "burden":
                if healthy is None:   # same seed -> same anatomy; lesions are drawn after it
                    healthy = make_phantom((nz, matrix, matrix), spacing, seed=case_seed, lesions=0, **anatomy)
                lesions = sample_lesions(healthy.lung_mask.astype(bool), spacing, k, crng,
                                         tuple(opt["radius_mm"]), float(opt["ggo_fraction"]))
            ph = make_phantom((nz, matrix, matrix), spacing, seed=case_seed if healthy is not None else
                              case_seed + attempt, lesions=lesions, **anatomy)
            lesion_ml = float(ph.lesion_mask.sum()) * spacing[0] * spacing[1] * spacing[2] / 1000.0
            if not positive or lesion_ml >= float(opt["min_lesion_ml"]):
                break
        else:
            raise RuntimeError(f"phantom {i}: could not draw a visible lesion in 20 attempts")
        name = f"phantom_{i:04d}"
        write_nifti(ph.volume, out / "volumes" / f"{name}.nii.gz", overwrite=True)
        mask_vol = Volume(array=ph.lesion_mask.astype(np.int16), spacing=ph.volume.spacing,
                          origin=ph.volume.origin, direction=ph.volume.direction)
        write_nifti(mask_vol, out / "masks" / f"{name}_lesions.nii.gz", overwrite=True)
        lung_vol = Volume(array=ph.lung_mask.astype(np.int16), spacing=ph.volume.spacing,
                          origin=ph.volume.origin, direction=ph.volume.direction)
        write_nifti(lung_vol, out / "masks" / f"{name}_lungs.nii.gz", overwrite=True)
        rows.append({
            "file": f"volumes/{name}.nii.gz", "label": "COVID" if positive else "NonCOVID",
            "patient_id": name, "split": split_of[i], "mask": f"masks/{name}_lesions.nii.gz",
            "lung_mask": f"masks/{name}_lungs.nii.gz",
            "n_lesions": len(ph.lesions), "lesion_ml": round(lesion_ml, 3),
            "kinds": "+".join(sorted({l.kind for l in ph.lesions})), "shape": "x".join(map(str, (nz, matrix, matrix))),
            "spacing_mm": "x".join(f"{s:.3f}" for s in spacing), "noise_hu": round(anatomy["noise_hu"], 2),
            "seed": case_seed,
        })
        if progress is not None:
            progress(i + 1, n)
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "README.md").write_text(
        "# Synthetic chest-CT phantoms (LungLens engine.phantom)\n\n"
        f"{n} volumes written by `engine.train.data3d.make_phantom_dataset(seed={seed})` in "
        f"{time.time() - t0:.0f} s. Every volume is synthetic: no patient data. `COVID` = COVID-like lesions "
        "(ground-glass / consolidation) with exact masks in `masks/`; `NonCOVID` = lesion-free. Options:\n\n"
        f"```json\n{json.dumps({k: v for k, v in opt.items()}, indent=1)}\n```\n", encoding="utf-8")
    return out


__all__ = [
    "VolumeRecord", "VolumeDataset", "Dataset3DError", "read_manifest3d", "read_slice_folder", "load_record_volume",
    "load_mask", "make_phantom_dataset", "sample_lesions", "split_indices", "parse_label_map", "parse_classes", "BINARY_CLASSES",
    "MOSMED_LABEL_MAP", "CCCCII_LABEL_MAP",
]
