"""The one road from a loaded ``Volume`` to a scan score and heatmaps, shared by the viewer and batch screening.

    model = ScanModel.open("lightsqueeze_proposed")        # shipped weights + their Preprocess + fast back-end
    result = model.screen(volume, progress=cb, cancel=is_cancelled)
    result.probability, result.slice_scores, result.top_slices
    heat = model.explain_slice(volume, result.top_slices[0], "cam")     # (y, x) on the voxel grid
    heat3d = model.explain_volume(volume, "cam")                        # 3-D models: (z, y, x)

2-D models score every axial slice (batched, ``engine.runtime.Predictor``: ONNX Runtime when it verifies) and
aggregate to a scan probability with a **top-k mean over lung-bearing slices**: ``k = ceil(TOP_FRACTION × n)``
clipped to [TOP_K_MIN, n], where n counts the lung-bearing slices (HU volumes: enclosed air covers at least
``MIN_LUNG_FRACTION`` of the slice and a quarter of the scan's maximum, see ``lung_bearing``; every slice counts
for 8-bit stacks).  Why: COVID findings are focal, so a mean over the
whole scan dilutes them, while the single maximum is hostage to one noisy slice; slices without lung (neck,
abdomen) are outside what the networks were trained on.  3-D models score the resampled volume directly.

Heatmaps: ``cam`` comes from the back-end's feature output (no second network pass); gradient methods
(``gradcam``, ``gradcampp``, ``layercam``) run in torch through ``engine.xai``.  Every map is mapped back with
the model's own ``Preprocess`` inverse, so it lands on exactly the voxels it was computed from.
Nothing here touches Qt; ``progress(fraction, message)`` and ``cancel() -> bool`` let a GUI worker drive it.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from engine.io import Volume
from engine.preprocess import Preprocess

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]

TOP_FRACTION = 0.05
TOP_K_MIN = 3
MIN_LUNG_FRACTION = 0.02
RELATIVE_LUNG_FRACTION = 0.25
EXPLAINERS = ("cam", "gradcam", "gradcampp", "layercam")


class ScreeningCancelled(Exception):
    """The caller asked to stop (``cancel()`` returned True)."""


class ScreeningError(RuntimeError):
    """A scan could not be screened by this model (the message says why and what to do)."""


@dataclass
class ScanResult:
    """Scan-level output of one model on one volume.  Research use, not a diagnosis."""

    model_name: str
    weights_sha256: str | None
    backend: str
    spatial_dims: int
    probability: float                     # P(positive class) for the scan
    positive_class: str
    classes: list[str]
    aggregation: str                       # how ``probability`` was formed (human-readable)
    slice_scores: np.ndarray | None = None # (z,) P(positive) per axial slice, 2-D models
    lung_slices: np.ndarray | None = None  # (z,) bool, slices that entered the aggregation
    top_slices: list[int] = field(default_factory=list)   # most suspicious slices, best first
    class_probs: np.ndarray | None = None  # (K,) scan-level probabilities (3-D models) / top-k mean (2-D)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return self.probability >= 0.5

    def summary(self) -> str:
        where = f", top slices {self.top_slices[:3]}" if self.top_slices else ""
        return (f"{self.model_name}: P({self.positive_class}) = {self.probability:.3f} "
                f"({self.aggregation}){where} — research use, not a diagnosis")


def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise ScreeningCancelled("screening cancelled")


def lung_fraction(stack: np.ndarray, air_hu: float = -400.0, side: int = 64) -> np.ndarray:
    """Share of each axial slice that is air *enclosed by the body* (the lungs, airways), (z,) float32.

    Cheap on purpose (no segmentation; ~ms per scan): each slice is subsampled to about ``side`` pixels a side,
    and an air pixel (HU < ``air_hu``) counts when body tissue lies on all four sides of it along its row and
    column — so the air around the patient, and air open to the image border, do not count.  The couch pad and
    a little bowel gas do, which is why eligibility is relative to the scan's maximum (``lung_bearing``).
    """
    stack = np.asarray(stack)
    if stack.ndim == 2:
        stack = stack[None]
    step = max(1, int(math.ceil(max(stack.shape[1:]) / side)))
    air = np.ascontiguousarray(stack[:, ::step, ::step]) < air_hu
    body = ~air
    acc = np.logical_or.accumulate
    enclosed = (air & acc(body, axis=2) & acc(body[:, :, ::-1], axis=2)[:, :, ::-1]
                & acc(body, axis=1) & acc(body[:, ::-1, :], axis=1)[:, ::-1, :])
    return enclosed.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)


def lung_bearing(stack: np.ndarray) -> np.ndarray:
    """(z,) bool: slices whose enclosed-air share is at least ``MIN_LUNG_FRACTION`` and at least
    ``RELATIVE_LUNG_FRACTION`` × the scan's largest — the chest, not the neck (trachea only) or the abdomen."""
    frac = lung_fraction(stack)
    if frac.size == 0:
        return np.zeros(0, dtype=bool)
    return (frac >= MIN_LUNG_FRACTION) & (frac >= RELATIVE_LUNG_FRACTION * float(frac.max()))


def top_k_mean(scores: np.ndarray, eligible: np.ndarray | None = None) -> tuple[float, list[int], int]:
    """(scan probability, eligible slice indices sorted by score descending, k) — see the module docstring."""
    scores = np.asarray(scores, dtype=np.float64)
    idx = np.arange(scores.size) if eligible is None or not np.any(eligible) else np.flatnonzero(eligible)
    n = idx.size
    if n == 0:
        return 0.0, [], 0
    k = int(min(n, max(TOP_K_MIN, math.ceil(TOP_FRACTION * n))))
    order = idx[np.argsort(-scores[idx], kind="stable")]
    return float(scores[order[:k]].mean()), [int(i) for i in order], k


class ScanModel:
    """A weighted model ready to screen scans: weights, their ``Preprocess``, a ``Predictor`` and the torch
    module for gradient explainers.  Thread-safe for ``screen``/``explain_*`` calls from one worker at a time."""

    def __init__(self, loaded: Any, predictor: Any):
        self.loaded = loaded
        self.predictor = predictor
        self.preprocess: Preprocess = loaded.preprocess
        self.name: str = loaded.name
        self.classes: list[str] = loaded.classes
        pos = loaded.positive_index
        self.positive_index: int = 1 if pos is None and len(self.classes) == 2 else int(pos or 0)
        self.positive_class: str = self.classes[self.positive_index]
        self._torch_lock = threading.Lock()
        self._box_cache: tuple[weakref.ref, tuple[int, int, int, int]] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def open(cls, name: str, weights: str | Path = "default", backend: str = "auto") -> "ScanModel":
        """``weights="default"`` = the shipped weights of ``name`` (``engine.weights.load_default``); else a
        folder / manifest path (safetensors only, sha256-verified)."""
        from engine.runtime import Predictor
        from engine.weights import load_default, load_weights

        loaded = load_default(name) if str(weights) == "default" else load_weights(weights)
        if name and loaded.name != name and str(weights) != "default":
            # A manifest for another network: say so instead of silently screening with it.
            from engine.models.registry import model_config
            if model_config(name).name != model_config(loaded.name).name:
                raise ScreeningError(f"weights at {weights} are for {loaded.name!r}, not {name!r}")
        return cls(loaded, Predictor.from_loaded(loaded, backend=backend))

    @property
    def spatial_dims(self) -> int:
        return int(self.preprocess.spatial_dims)

    @property
    def weights_sha256(self) -> str | None:
        m = self.loaded.manifest
        return m.get("sha256") or (m.get("weights") or {}).get("sha256")

    @property
    def backend(self) -> str:
        return str(self.predictor.backend)

    def describe(self) -> dict[str, Any]:
        return {"model": self.name, "classes": self.classes, "positive_class": self.positive_class,
                "weights_sha256": self.weights_sha256, **self.predictor.describe()}

    def crop_box(self, volume: Volume) -> tuple[int, int, int, int]:
        """One in-plane crop box per volume (the model's lung crop, or the whole slice), shared by every batch
        and every heatmap of that volume so scores never depend on batch size.  Cached for the last volume."""
        # Keyed by the array object itself (a weak reference), not id(): a later volume may reuse the address.
        if self._box_cache is not None and self._box_cache[0]() is volume.array:
            return self._box_cache[1]
        box = self.preprocess.crop_box(volume.array, volume.is_hu)
        self._box_cache = (weakref.ref(volume.array), box)
        return box

    # ------------------------------------------------------------------ screening
    def screen(self, volume: Volume, *, batch_size: int = 16, progress: ProgressFn | None = None,
               cancel: CancelFn | None = None) -> ScanResult:
        """Score one volume.  2-D: every axial slice, then top-k mean; 3-D: the whole resampled volume."""
        if self.spatial_dims == 3:
            return self._screen_3d(volume, progress, cancel)
        return self._screen_2d(volume, batch_size, progress, cancel)

    def _screen_2d(self, volume: Volume, batch_size: int, progress: ProgressFn | None,
                   cancel: CancelFn | None) -> ScanResult:
        t0 = time.perf_counter()
        stack = volume.array
        n = stack.shape[0]
        scores = np.zeros(n, dtype=np.float32)
        probs = np.zeros((n, len(self.classes)), dtype=np.float32)
        t_pre = t_inf = 0.0
        box = self.crop_box(volume)
        for start in range(0, n, batch_size):
            _check_cancel(cancel)
            chunk = range(start, min(n, start + batch_size))
            a = time.perf_counter()
            x, _geometry = self.preprocess.slices(stack, volume.is_hu, indices=list(chunk), box=box)
            b = time.perf_counter()
            pred = self.predictor.predict(x.numpy(), features=False)
            c = time.perf_counter()
            t_pre += b - a
            t_inf += c - b
            probs[start:start + len(chunk)] = pred.probs
            scores[start:start + len(chunk)] = pred.probs[:, self.positive_index]
            if progress is not None:
                progress(min(1.0, (start + len(chunk)) / n), f"slice {start + len(chunk)}/{n}")
        eligible = lung_bearing(stack) if volume.is_hu else np.ones(n, dtype=bool)
        probability, order, k = top_k_mean(scores, eligible)
        used = eligible if eligible.any() else np.ones(n, dtype=bool)
        top = order[:max(k, min(5, len(order)))]
        class_probs = probs[order[:k]].mean(axis=0) if k else probs.mean(axis=0)
        aggregation = (f"top-{k} mean of {int(used.sum())} lung-bearing slices"
                       if volume.is_hu and eligible.any() else f"top-{k} mean of {n} slices")
        return ScanResult(
            model_name=self.name, weights_sha256=self.weights_sha256, backend=self.backend, spatial_dims=2,
            probability=probability, positive_class=self.positive_class, classes=self.classes,
            aggregation=aggregation, slice_scores=scores, lung_slices=used, top_slices=top,
            class_probs=class_probs,
            seconds={"preprocess": t_pre, "inference": t_inf, "total": time.perf_counter() - t0},
        )

    def _screen_3d(self, volume: Volume, progress: ProgressFn | None, cancel: CancelFn | None) -> ScanResult:
        t0 = time.perf_counter()
        _check_cancel(cancel)
        x, _geometry = self.preprocess.volume(volume)
        t1 = time.perf_counter()
        _check_cancel(cancel)
        pred = self.predictor.predict(x.numpy(), features=False)
        t2 = time.perf_counter()
        if progress is not None:
            progress(1.0, "volume scored")
        p = pred.probs[0]
        return ScanResult(
            model_name=self.name, weights_sha256=self.weights_sha256, backend=self.backend, spatial_dims=3,
            probability=float(p[self.positive_index]), positive_class=self.positive_class, classes=self.classes,
            aggregation=f"3-D model on a {'×'.join(map(str, x.shape[2:]))} resampled volume",
            class_probs=p, seconds={"preprocess": t1 - t0, "inference": t2 - t1, "total": t2 - t0},
        )

    # ------------------------------------------------------------------ heatmaps
    def explain_slices(self, volume: Volume, indices: Sequence[int], method: str = "cam",
                       target: int | None = None) -> np.ndarray:
        """Raw heatmaps (N, y, x) on the voxel grid for axial slices of a 2-D model.  ``target`` defaults to the
        positive class (where did the network see COVID?)."""
        if self.spatial_dims != 2:
            raise ScreeningError(f"{self.name} is a 3-D model: use explain_volume")
        method = _method(method)
        x, geometry = self.preprocess.slices(volume.array, volume.is_hu, indices=list(indices),
                                             box=self.crop_box(volume))
        cls_index = self.positive_index if target is None else int(target)
        if method == "cam" and self.predictor.cam_available:
            pred = self.predictor.predict(x.numpy(), features=True)
            maps = self.predictor.cam(pred.features, cls_index)
        else:
            maps = self._torch_explain(x, method, cls_index)
        return Preprocess.to_voxels(maps, geometry).astype(np.float32, copy=False)

    def explain_slice(self, volume: Volume, index: int, method: str = "cam", target: int | None = None) -> np.ndarray:
        """One axial slice's heatmap (y, x) on the voxel grid."""
        return self.explain_slices(volume, [index], method, target)[0]

    def explain_volume(self, volume: Volume, method: str = "cam", target: int | None = None) -> np.ndarray:
        """3-D models: the volume's heatmap (z, y, x) on the voxel grid.  2-D models: slice maps stacked."""
        method = _method(method)
        cls_index = self.positive_index if target is None else int(target)
        if self.spatial_dims == 2:
            return self.explain_slices(volume, range(volume.shape[0]), method, target)
        x, geometry = self.preprocess.volume(volume)
        if method == "cam" and self.predictor.cam_available:
            pred = self.predictor.predict(x.numpy(), features=True)
            maps = self.predictor.cam(pred.features, cls_index)
        else:
            maps = self._torch_explain(x, method, cls_index)
        return Preprocess.to_voxels(maps[0], geometry).astype(np.float32, copy=False)

    def activations(self, volume: Volume, index: int, layer: str | None = None) -> np.ndarray:
        """Per-filter activation maps (C, h, w) of ``layer`` for one axial slice ("look inside", P1)."""
        from engine.xai import activation_maps

        x, _ = self.preprocess.slices(volume.array, volume.is_hu, indices=[index], box=self.crop_box(volume))
        with self._torch_lock:
            maps = activation_maps(self.loaded.model, x, layer)
        return np.asarray(maps[0] if np.ndim(maps) == 4 else maps, dtype=np.float32)

    def _torch_explain(self, x: torch.Tensor, method: str, cls_index: int) -> np.ndarray:
        from engine.xai import explain

        with self._torch_lock:
            return explain(self.loaded.model, x, method, target=cls_index)


def _method(method: str) -> str:
    m = method.lower().replace("-", "").replace("_", "").replace("++", "pp").replace("+", "p")
    if m not in EXPLAINERS:
        raise ScreeningError(f"unknown explainer {method!r}; choose one of {', '.join(EXPLAINERS)}")
    return m
