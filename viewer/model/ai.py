"""Qt-free state of the AI workflow: which models can screen, what a model found, and its heatmaps per slice.

* :class:`ModelCatalog` lists the models that have weights (manifest + safetensors) on a search path -- the
  shipped ``resources/weights/<name>/`` folders and ``$LUNGLENS_WEIGHTS_PATH`` by default, or any roots / weights
  folders given to it (``lunglens --weights DIR``, tests).  Only manifests are read; weights load in a worker.
* :class:`ModelEntry` is one of them with its model card (parameters, training data, metrics, limits).
* :class:`HeatmapCache` keeps the display maps of one model per explainer on the voxel grid (z, y, x), NaN where
  not computed: a 2-D model fills it slice by slice on demand, a 3-D model in one go.
* :func:`display_map` is how a raw explainer map becomes a displayed one: negative evidence is cut at 0 and
  the rest scaled to [0, 1] by its maximum (per slice for 2-D models, over the volume for 3-D models), so 0
  means "no evidence for the positive class" and 1 "the strongest evidence in this slice/volume".  The colour
  scale, threshold and difference view all work on this [0, 1] scale, which makes two models comparable.

The scan itself is screened by ``engine.screen.pipeline.ScanModel`` (the one road shared with batch screening).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

# The explainers of engine.screen.pipeline (EXPLAINERS there), repeated so that importing the viewer does not
# import torch: the window opens first, the engine warms up in the background (a test checks they agree).
EXPLAINERS = ("cam", "gradcam", "gradcampp", "layercam")
EXPLAINER_LABELS = {"cam": "CAM", "gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "layercam": "Layer-CAM"}
DEFAULT_EXPLAINER = "gradcam"
RESEARCH_LABEL = "Research use only — not a diagnosis"


def explainer_name(method: str) -> str:
    """Canonical explainer key (``Grad-CAM++`` -> ``gradcampp``); ValueError naming the choices otherwise."""
    m = str(method).lower().replace("-", "").replace("_", "").replace(" ", "").replace("++", "pp").replace("+", "p")
    if m not in EXPLAINERS:
        raise ValueError(f"unknown explainer {method!r}; choose one of {', '.join(EXPLAINERS)}")
    return m


# --------------------------------------------------------------------------------------------- catalogue
@dataclass(frozen=True)
class ModelEntry:
    """A model with weights on disk (its manifest read, its weights not loaded)."""

    name: str                      # registered model name (canonical)
    folder: Path                   # the weights folder (manifest.json + model.safetensors)
    manifest: dict = field(compare=False, repr=False)
    alias: str = ""                # set when several weights of one network are listed: "name@folder"

    @property
    def key(self) -> str:
        """What the viewer calls these weights: the model name, or ``name@folder`` for a second set of weights of
        the same network (e.g. two trainings compared side by side)."""
        return self.alias or self.name

    @property
    def spatial_dims(self) -> int:
        pre = self.manifest.get("preprocess") or {}
        if "spatial_dims" in pre:
            return int(pre["spatial_dims"])
        config = self.config
        return int(config.spatial_dims) if config is not None else 2

    @property
    def config(self) -> Any:
        """The registry's ``ModelConfig`` (None if this engine does not know the model)."""
        try:
            from engine.models.registry import model_config
            return model_config(self.name)
        except KeyError:
            return None

    @property
    def parameters(self) -> int | None:
        value = self.manifest.get("parameters")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.manifest.get("classes", [])]

    @property
    def positive_class(self) -> str | None:
        return self.manifest.get("positive_class")

    @property
    def sha256(self) -> str:
        return str(self.manifest.get("sha256", ""))

    @property
    def input_size(self) -> tuple[int, ...]:
        pre = self.manifest.get("preprocess") or {}
        size = pre.get("input_size") or (self.config.input_size if self.config is not None else ())
        return tuple(int(s) for s in size)

    @property
    def label(self) -> str:
        """One line for lists: name, 2-D/3-D, parameter count."""
        params = self.parameters
        size = "" if params is None else (f" · {params / 1e6:.2f} M params" if params >= 1e5 else
                                          f" · {params:,} params")
        return f"{self.key} · {self.spatial_dims}-D{size}"

    def card(self) -> dict[str, str]:
        """The model card in short: what it is, its input, parameters, data, metrics and limits (plain text)."""
        m = self.manifest
        config = self.config
        what = (config.description or config.family) if config is not None else "not registered in this engine"
        paper = f" (paper {config.paper})" if config is not None and config.paper else ""
        size = "×".join(map(str, self.input_size)) or "?"
        params = self.parameters
        data = m.get("data") or {}
        metrics = m.get("metrics") or {}
        return {
            "Model": f"{self.name}{paper}: {what}",
            "Input": f"{self.spatial_dims}-D, {size}" + (", every axial slice" if self.spatial_dims == 2 else
                                                           ", the resampled volume"),
            "Parameters": f"{params:,}" if params is not None else "not recorded",
            "Classes": ", ".join(self.classes) + (f" (positive: {self.positive_class})" if self.positive_class
                                                  else ""),
            "Data": _data_text(data) or "not recorded",
            "Metrics": _metrics_text(metrics) or "not recorded",
            "Limits": str(m.get("limits") or "not recorded"),
            "Weights": f"{self.folder} (sha256 {self.sha256[:12]}…)",
        }

    def card_markdown(self) -> str:
        """The full model card (``engine.weights.render_model_card``), Markdown."""
        from engine.weights import render_model_card
        return render_model_card(self.manifest)


def _data_text(data: dict) -> str:
    """Shipped manifests: dataset names and the train/validation sizes; anything else flattened."""
    datasets = data.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        return _flat_text(data)
    names = [str(d.get("name", key)) if isinstance(d, dict) else str(key) for key, d in datasets.items()]
    sizes = [f"{part} n = {data[part]['n']}" for part in ("train", "val")
             if isinstance(data.get(part), dict) and "n" in data[part]]
    return "; ".join(names) + (f" ({', '.join(sizes)})" if sizes else "")


def _metrics_text(metrics: dict) -> str:
    """Shipped manifests: validation and cross-validation headline figures; anything else flattened."""
    parts = []
    val = metrics.get("validation")
    if isinstance(val, dict) and "accuracy" in val:
        parts.append(f"validation (n = {val.get('n', '?')}): accuracy {val['accuracy']:.3f}, AUC "
                     f"{val.get('auc', float('nan')):.3f}, sensitivity {val.get('sensitivity', float('nan')):.3f}, "
                     f"specificity {val.get('specificity', float('nan')):.3f}")
    cv = metrics.get("cross_validation")
    if isinstance(cv, dict) and isinstance(cv.get("accuracy"), dict):
        parts.append(f"{cv.get('folds', '?')}-fold CV: accuracy {cv['accuracy']['mean']:.3f}"
                     + (f", AUC {cv['auc']['mean']:.3f}" if isinstance(cv.get("auc"), dict) else ""))
    test = metrics.get("test")
    if isinstance(test, dict) and "accuracy" in test:
        parts.append(f"test (n = {test.get('n', '?')}): accuracy {test['accuracy']:.3f}"
                     + (f", AUC {test['auc']:.3f}" if isinstance(test.get("auc"), float) else ""))
    return "; ".join(parts) if parts else _flat_text(metrics)


def _flat_text(values: dict, limit: int = 8) -> str:
    parts = []
    for key, value in list(values.items())[:limit]:
        if isinstance(value, float):
            text = f"{value:.3f}"
        elif isinstance(value, dict):
            text = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in
                             list(value.items())[:4])
            text = "{" + text + "}"
        elif isinstance(value, (list, tuple)):
            text = ", ".join(map(str, value[:6])) + ("…" if len(value) > 6 else "")
        else:
            text = str(value)
        parts.append(f"{key}: {text}")
    more = len(values) - limit
    return "; ".join(parts) + (f"; … ({more} more)" if more > 0 else "")


class ModelCatalog:
    """Models that have weights.  ``roots``: folders holding ``<model_name>/manifest.json`` (default: the engine's
    weights search path, read at each :meth:`entries` call so newly shipped weights appear); :meth:`add` puts a
    weights folder or another root before them (added ones in the order added; the first weights of a network
    take its plain name).  A folder reached twice is listed once; other weights of an already listed network are
    listed too, as ``name@folder`` (see :attr:`ModelEntry.key`).
    """

    def __init__(self, roots: Sequence[str | Path] | None = None, extra: Iterable[str | Path] = ()):
        self._roots = None if roots is None else [Path(r) for r in roots]
        self._added: list[Path] = []
        self.problems: list[str] = []      # unreadable manifests met by the last scan (shown, not fatal)
        for path in extra:
            self.add(path)

    @property
    def roots(self) -> list[Path]:
        if self._roots is not None:
            return list(self._roots)
        from engine.weights import weights_search_path
        return weights_search_path()

    def add(self, path: str | Path) -> list[ModelEntry]:
        """Add a weights folder (with ``manifest.json``) or a folder of them; returns the models found there.

        Raises ``engine.weights.WeightsError`` saying what is wrong when ``path`` holds no weights at all.
        """
        from engine.weights import MANIFEST_NAME, WeightsNotFoundError

        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise WeightsNotFoundError("no such weights folder; give a folder holding manifest.json + "
                                       "model.safetensors, or a folder of such folders", folder)
        found = self._scan_one(folder) if (folder / MANIFEST_NAME).is_file() else self._scan_root(folder)
        if not found:
            raise WeightsNotFoundError(f"no LungLens weights here (no {MANIFEST_NAME} in the folder or its "
                                       f"sub-folders); weights are written by engine.weights.save_weights", folder)
        if folder not in self._added:
            self._added.append(folder)
        return found

    def entries(self) -> list[ModelEntry]:
        """Every set of weights, added folders first; sorted 2-D first, then by key."""
        from engine.weights import MANIFEST_NAME

        self.problems = []
        found: list[ModelEntry] = []
        for folder in self._added:
            found += self._scan_one(folder) if (folder / MANIFEST_NAME).is_file() else self._scan_root(folder)
        for root in self.roots:
            found += self._scan_root(root)
        chosen: dict[str, ModelEntry] = {}
        seen: set[Path] = set()
        for entry in found:
            where = entry.folder.resolve()
            if where in seen:                      # one folder reached through two roots
                continue
            seen.add(where)
            key = entry.name
            if key in chosen:        # name@<folder>, or name@<parent> for the usual <root>/<name>/ layout
                where = entry.folder.name if entry.folder.name != entry.name else entry.folder.parent.name
                key = f"{entry.name}@{where}"
                if key in chosen:
                    key = f"{entry.name}@{entry.folder.parent.name}/{entry.folder.name}"
                entry = replace(entry, alias=key)
            chosen[key] = entry
        return sorted(chosen.values(), key=lambda e: (e.spatial_dims, e.key))

    def names(self) -> list[str]:
        return [e.key for e in self.entries()]

    def get(self, name: str) -> ModelEntry:
        """The entry whose key is ``name``, else the first of the model ``name`` (registry aliases accepted);
        KeyError listing the models that do have weights."""
        entries = self.entries()
        for entry in entries:
            if entry.key == name:
                return entry
        wanted = _canonical(name)
        for entry in entries:
            if entry.name in (name, wanted):
                return entry
        have = ", ".join(e.key for e in entries) or "none"
        where = ", ".join(str(p) for p in self._added + self.roots)
        raise KeyError(f"no weights for model {name!r} (models with weights: {have}; searched {where}). "
                       f"Train or download weights, or point --weights at a weights folder.")

    def _scan_root(self, root: Path) -> list[ModelEntry]:
        from engine.weights import MANIFEST_NAME

        if not root.is_dir():
            return []
        found = []
        for sub in sorted(root.iterdir()):
            if sub.is_dir() and (sub / MANIFEST_NAME).is_file():
                found += self._scan_one(sub)
        return found

    def _scan_one(self, folder: Path) -> list[ModelEntry]:
        from engine.weights import WeightsError, read_manifest

        try:
            manifest = read_manifest(folder)
        except WeightsError as exc:
            self.problems.append(str(exc))
            return []
        return [ModelEntry(_canonical(str(manifest["model_name"])), folder, dict(manifest))]


def _canonical(name: str) -> str:
    try:
        from engine.models.registry import model_config
        return model_config(name).name
    except KeyError:
        return name


# ------------------------------------------------------------------------------------------- heatmaps
def display_map(raw: np.ndarray) -> np.ndarray:
    """Raw explainer map (any shape) -> [0, 1] float32: negative values cut at 0, then divided by the maximum.

    A map without positive evidence becomes all zeros.  NaN/inf are treated as 0.
    """
    arr = np.nan_to_num(np.asarray(raw, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    arr = np.maximum(arr, 0.0)
    peak = float(arr.max()) if arr.size else 0.0
    if not peak > 1e-12 or not math.isfinite(peak):
        return np.zeros_like(arr)
    arr /= peak
    return arr


class HeatmapCache:
    """Display maps (see :func:`display_map`) of one model on one volume, one (z, y, x) array per explainer.

    NaN marks what has not been computed.  The arrays are handed to a ``HeatmapLayer`` as its data (no copy), so
    filling a slice here and ``layer.set_slice`` write the same memory.
    """

    def __init__(self, shape: tuple[int, int, int], spatial_dims: int = 2):
        self.shape = tuple(int(s) for s in shape)
        self.spatial_dims = int(spatial_dims)
        self._maps: dict[str, np.ndarray] = {}
        self._complete: set[str] = set()

    def array(self, method: str) -> np.ndarray:
        """The (z, y, x) array of ``method`` (created all-NaN on first use; GUIs should :meth:`adopt` one made
        in a worker instead: a full-volume allocation is hundreds of MB)."""
        method = explainer_name(method)
        if method not in self._maps:
            self._maps[method] = np.full(self.shape, np.nan, dtype=np.float32)
        return self._maps[method]

    def exists(self, method: str) -> bool:
        return explainer_name(method) in self._maps

    def adopt(self, method: str, array: np.ndarray, *, complete: bool = False) -> np.ndarray:
        """Use ``array`` ((z, y, x) float32, NaN = not computed) as the store of ``method`` (no copy)."""
        method = explainer_name(method)
        array = np.asarray(array, dtype=np.float32)
        if array.shape != self.shape:
            raise ValueError(f"heatmap array {array.shape} does not fit the volume {self.shape}")
        self._maps[method] = array
        if complete:
            self._complete.add(method)
        return array

    def has(self, method: str, z: int | None = None) -> bool:
        """Computed for slice ``z`` (2-D) / the volume (3-D, or ``z`` None)?"""
        method = explainer_name(method)
        if method in self._complete:
            return True
        if method not in self._maps or z is None or self.spatial_dims == 3:
            return False
        return bool(np.isfinite(self._maps[method][int(z)]).any())

    def put_slice(self, method: str, z: int, raw: np.ndarray) -> np.ndarray:
        """Store slice ``z``'s raw map (y, x) as a display map; returns what was stored."""
        values = display_map(raw)
        target = self.array(method)
        if values.shape != target.shape[1:]:
            raise ValueError(f"heatmap slice {values.shape} does not fit the volume's slices {target.shape[1:]}")
        target[int(z)] = values
        return values

    def put_volume(self, method: str, raw: np.ndarray) -> np.ndarray:
        """Store a whole-volume raw map (z, y, x) (3-D models) as a display map, in place."""
        values = display_map(raw)
        target = self.array(method)
        if values.shape != target.shape:
            raise ValueError(f"heatmap volume {values.shape} does not fit the volume {target.shape}")
        target[...] = values
        self._complete.add(explainer_name(method))
        return target

    @property
    def methods(self) -> list[str]:
        return list(self._maps)


def difference_slice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A − B of two display-map slices; NaN where either is not computed (so it stays transparent)."""
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    return (a - b).astype(np.float32)


def score_text(probability: float, positive_class: str) -> str:
    """``P(COVID) = 0.83`` -- the scan-level number as the panel and screenshots show it."""
    return f"P({positive_class}) = {probability:.2f}"
