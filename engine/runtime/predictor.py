"""``Predictor``: the one inference entry point for the viewer and batch screening.

    loaded = engine.weights.load_default("lightsqueeze_proposed")
    predictor = Predictor.from_loaded(loaded)                  # backend="auto": ONNX Runtime if it verifies
    pred = predictor.predict(batch)                            # N×C×H×W (or N×C×D×H×W) float32
    pred.probs                                                 # N×K softmax probabilities
    maps = predictor.cam(pred.features, pred.labels)           # N×h×w Zhou CAM on the model grid

``batch`` is what ``loaded.preprocess`` produced (``Preprocess.slices`` / the 3-D path); put maps back on the
scan with ``Preprocess.to_voxels``.  The ONNX back-end returns the CAM feature map as a second graph output, so
CAM costs one small einsum, no second network pass.  Torch stays for training and gradient-based explainers
(Grad-CAM & co. live in ``engine.xai``); ``backend="torch"`` gives the same outputs (within 1e-4) without ONNX.

Thread-safety: ``predict`` may be called from several threads (ONNX Runtime sessions are thread-safe; the
torch path serialises calls).  Nothing here touches Qt.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from engine.runtime.export import (
    INPUT_NAME,
    LOGITS_NAME,
    ExportError,
    ExportResult,
    FeatureTap,
    cached_export,
    resolve_module,
)
from engine.runtime.session import default_threads, make_session

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnx", "torch")


@dataclass
class Prediction:
    """Outputs for a batch of N inputs."""

    probs: np.ndarray                   # N×K float32, rows sum to 1
    logits: np.ndarray                  # N×K float32
    features: np.ndarray | None = None  # N×k×h×w (N×k×d×h×w) output of the model's cam_layer, if it has one
    seconds: float = 0.0                # wall time of the network passes

    @property
    def labels(self) -> np.ndarray:
        """Arg-max class per input (N,)."""
        return self.probs.argmax(axis=1)

    def __len__(self) -> int:
        return int(self.probs.shape[0])


@dataclass(frozen=True)
class CamHead:
    """Classifier weights CAM needs: ``maps[n] = Σ_k weight[c, k] · features[n, k]`` (Zhou et al. 2016)."""

    weight: np.ndarray                  # K×k float32
    bias: np.ndarray | None = None      # K (not used by CAM itself; kept for completeness)


class Predictor:
    """Runs one weighted model on the fastest back-end that reproduces torch.

    Build with :meth:`from_loaded` (a ``engine.weights.LoadedModel``) or :meth:`from_model` (any registered
    ``nn.Module``).  Attributes: ``backend`` ("onnx", "onnx-int8" or "torch", the one actually used), ``fallback_reason``
    (why "auto" ended up on torch, else None), ``input_shape`` (C×H×W / C×D×H×W), ``num_classes``,
    ``cam_available``, ``export`` (the :class:`ExportResult`, ONNX only), ``threads``.
    """

    def __init__(self, *, model_name: str, input_shape: tuple[int, ...], num_classes: int,
                 backend: str, cam_layer: str, cam_head: CamHead | None, cam_unavailable_reason: str | None,
                 session: Any = None, tap: FeatureTap | None = None, export: ExportResult | None = None,
                 threads: int = 1, max_batch: int = 16, preprocess: Any = None, channels_last: bool = False,
                 fallback_reason: str | None = None, manifest: Any = None):
        self.model_name = model_name
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.backend = backend
        self.cam_layer = cam_layer
        self.cam_head = cam_head
        self.cam_unavailable_reason = cam_unavailable_reason
        self.export = export
        self.threads = int(threads)
        self.max_batch = max(1, int(max_batch))
        self.preprocess = preprocess
        self.channels_last = channels_last
        self.fallback_reason = fallback_reason
        self.manifest = manifest
        self._session = session
        self._tap = tap
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_loaded(cls, loaded: Any, backend: str = "auto", **kwargs: Any) -> "Predictor":
        """From ``engine.weights.LoadedModel`` (``.model``, ``.manifest``, ``.preprocess``); the cache key is the
        manifest's weights sha256."""
        model = getattr(loaded, "model")
        manifest = getattr(loaded, "manifest", None)
        preprocess = getattr(loaded, "preprocess", None)
        kwargs.setdefault("weights_sha256", _weights_sha(manifest))
        return cls.from_model(model, preprocess=preprocess, backend=backend, manifest=manifest, **kwargs)

    @classmethod
    def from_model(cls, model: nn.Module, *, preprocess: Any = None, input_shape: Sequence[int] | None = None,
                   backend: str = "auto", weights_sha256: str | None = None, threads: int | None = None,
                   cache_dir: str | Path | None = None, max_batch: int = 16, channels_last: bool | None = None,
                   manifest: Any = None, refresh_export: bool = False, int8: bool | str = "auto") -> "Predictor":
        """Any ``nn.Module`` carrying a ``model_config`` (``create_model`` sets it).

        ``input_shape`` (C×H×W / C×D×H×W) defaults to ``preprocess.in_chans`` + ``preprocess.input_size``, else
        to the config's ``input_size`` with the model's first-layer input channels.  ``channels_last`` (torch
        back-end only; default: on for 2-D) is dropped automatically if it fails or changes the outputs.
        ``int8``: "auto" serves the int8 model of these weights if one passed the validation-AUC gate
        (``engine.runtime.quantize``), True requires it, False never uses it.
        """
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        config = getattr(model, "model_config", None)
        name = getattr(config, "name", type(model).__name__)
        shape = _input_shape(model, config, preprocess, input_shape)
        cam_layer = (getattr(preprocess, "cam_layer", "") or getattr(config, "cam_layer", "") or "")
        classifier = (getattr(preprocess, "classifier", "") or getattr(config, "classifier", "") or "")
        threads = int(threads or default_threads())
        model.eval()
        tap = FeatureTap(model, cam_layer).eval()

        def build(kind: str, dims: tuple[int, int] | None, **extra: Any) -> "Predictor":
            if dims is None:   # (classes, CAM channels) from one torch pass
                with torch.inference_mode():
                    probe = tap(torch.zeros((1, *shape)))
                dims = (int(probe[0].shape[1]), int(probe[1].shape[1]) if cam_layer else 0)
            head, why_not = _cam_head(model, config, classifier, cam_layer, dims[1], dims[0])
            return cls(model_name=name, input_shape=shape, num_classes=dims[0], cam_layer=cam_layer, cam_head=head,
                       cam_unavailable_reason=why_not, threads=threads, max_batch=max_batch, preprocess=preprocess,
                       manifest=manifest, backend=kind, **extra)

        fallback = None
        if backend in ("auto", "onnx"):
            try:
                export = cached_export(model, shape, weights_sha256=weights_sha256, model_name=name,
                                       cam_layer=cam_layer, cache_dir=cache_dir, refresh=refresh_export)
                kind = "onnx"
                if int8:
                    from engine.runtime.quantize import accepted_int8

                    q = accepted_int8(export.spec, cache_dir)
                    if q is not None:
                        export, kind = q, "onnx-int8"
                    elif int8 is True:
                        raise ExportError(f"no int8 model of {name!r} has passed the validation gate; run "
                                          "`lunglens-engine export --int8 --calibration DATA` first")
                tuned = export.extra.get("session") or {}
                session = make_session(export.path, threads, optimization=tuned.get("optimization", "all"))
                predictor = build(kind, _output_dims(session, bool(cam_layer)), session=session, export=export)
                if tuned.get("chunk"):   # run big batches in the chunk size measured fastest on this machine
                    predictor.max_batch = max(1, min(predictor.max_batch, int(tuned["chunk"])))
                tap.remove()
                return predictor
            except Exception as exc:  # noqa: BLE001 - "auto" must always end with a working predictor
                if backend == "onnx":
                    tap.remove()
                    if isinstance(exc, ExportError):
                        raise
                    raise ExportError(f"ONNX Runtime could not load the export of {name!r}: {exc}") from exc
                fallback = f"{type(exc).__name__}: {exc}"
                log.warning("model %s: using the torch back-end (%s)", name, fallback)

        spatial = len(shape) - 1
        use_cl = (spatial == 2) if channels_last is None else bool(channels_last)
        if use_cl:
            use_cl = _channels_last_ok(model, tap, shape)
        return build("torch", None, tap=tap, channels_last=use_cl, fallback_reason=fallback)

    # ------------------------------------------------------------------------------------------ inference
    @property
    def cam_available(self) -> bool:
        return self.cam_head is not None

    def predict(self, batch: np.ndarray | torch.Tensor, *, features: bool = True) -> Prediction:
        """Class probabilities (and CAM features) for a batch, N×C×H×W / N×C×D×H×W float32 (a single
        C×H×W / C×D×H×W input is accepted too and treated as N = 1).  Big batches run in chunks of
        ``max_batch`` (on ONNX: at most the chunk size tuned fastest at export), so memory stays bounded."""
        x = self._check(batch)
        t0 = time.perf_counter()
        logits, feats = [], []
        for start in range(0, x.shape[0], self.max_batch):
            chunk = x[start:start + self.max_batch]
            out = self._run(chunk, features)
            logits.append(out[0])
            if features and len(out) > 1:
                feats.append(out[1])
        seconds = time.perf_counter() - t0
        if not logits:
            k = self.num_classes
            empty = np.zeros((0, k), np.float32)
            return Prediction(probs=empty, logits=empty.copy(), features=None, seconds=seconds)
        lg = np.concatenate(logits).astype(np.float32, copy=False)
        ft = np.concatenate(feats).astype(np.float32, copy=False) if feats else None
        return Prediction(probs=softmax(lg), logits=lg, features=ft, seconds=seconds)

    __call__ = predict

    def _run(self, x: np.ndarray, features: bool = True) -> list[np.ndarray]:
        if self._session is not None:
            # Fetching only the logits saves copying the (large) feature map out of the session.
            names = None if features else [LOGITS_NAME]
            return self._session.run(names, {INPUT_NAME: x})
        with self._lock, torch.inference_mode():
            t = torch.from_numpy(x)
            if self.channels_last:
                t = t.contiguous(memory_format=_cl_format(t.ndim))
            outs = self._tap(t)
            return [o.float().contiguous().numpy() for o in (outs if features else outs[:1])]

    def _check(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(batch, torch.Tensor):
            batch = batch.detach().cpu().numpy()
        x = np.asarray(batch)
        if x.ndim == len(self.input_shape):
            x = x[None]
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            want = "N×" + "×".join(str(s) for s in self.input_shape)
            raise ValueError(f"model {self.model_name!r} expects input of shape {want}, got "
                             f"{'×'.join(str(s) for s in x.shape)}; build it with the model's Preprocess")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"model {self.model_name!r} expects float32 input, got {x.dtype}")
        return np.ascontiguousarray(x, dtype=np.float32)

    # ------------------------------------------------------------------------------------------ CAM
    def cam(self, features: np.ndarray, class_index: int | Sequence[int] | np.ndarray, *,
            normalise: bool = False) -> np.ndarray:
        """Zhou CAM on the model grid: N×h×w (N×d×h×w) maps, ``Σ_k w[c, k] · features[n, k]``.

        ``class_index`` is one class for all inputs or one per input (e.g. ``prediction.labels``).
        ``normalise=True`` applies ReLU and scales each map to [0, 1] (an all-zero map stays zero).  Map it onto
        the scan with ``Preprocess.to_voxels``.
        """
        if self.cam_head is None:
            raise RuntimeError(f"CAM is not available for {self.model_name!r}: {self.cam_unavailable_reason}. "
                               "Use a gradient-based explainer (engine.xai, torch back-end) instead.")
        f = np.asarray(features, dtype=np.float32)
        w = self.cam_head.weight
        if f.ndim < 3 or f.shape[1] != w.shape[1]:
            raise ValueError(f"features must be N×{w.shape[1]}×..., got shape {f.shape}")
        idx = np.broadcast_to(np.asarray(class_index, dtype=np.int64).reshape(-1), (f.shape[0],))
        if idx.size and (idx.min() < 0 or idx.max() >= w.shape[0]):
            raise ValueError(f"class_index must be in [0, {w.shape[0]}), got {np.unique(idx).tolist()}")
        maps = np.einsum("nk...,nk->n...", f, w[idx], optimize=True).astype(np.float32, copy=False)
        if normalise:
            maps = np.maximum(maps, 0.0)
            peak = maps.reshape(maps.shape[0], -1).max(axis=1) if maps.size else np.zeros(0, np.float32)
            scale = np.where(peak > 0, peak, 1.0).astype(np.float32)
            maps = maps / scale.reshape((-1,) + (1,) * (maps.ndim - 1))
        return maps

    def predict_with_cam(self, batch: np.ndarray | torch.Tensor, class_index: int | Sequence[int] | None = None,
                         *, normalise: bool = True) -> tuple[Prediction, np.ndarray | None]:
        """``predict`` + CAM for ``class_index`` (default: each input's predicted class); maps None if the
        model has no CAM."""
        pred = self.predict(batch)
        if not self.cam_available or pred.features is None:
            return pred, None
        idx = pred.labels if class_index is None else class_index
        return pred, self.cam(pred.features, idx, normalise=normalise)

    # ------------------------------------------------------------------------------------------ misc
    def describe(self) -> dict[str, Any]:
        """What runs and why: for logs, the CLI and the benchmark."""
        info: dict[str, Any] = {
            "model": self.model_name, "backend": self.backend, "threads": self.threads,
            "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "cam_layer": self.cam_layer, "cam_available": self.cam_available,
            "channels_last": self.channels_last, "fallback_reason": self.fallback_reason,
        }
        if self.export is not None:
            info["onnx"] = {"path": str(self.export.path), "exporter": self.export.exporter,
                            "from_cache": self.export.from_cache, "max_prob_diff": self.export.max_prob_diff,
                            "max_value_diff": self.export.max_value_diff,
                            "variant": self.export.spec.variant,
                            "optimization": (self.export.extra.get("session") or {}).get("optimization", "all")}
            info["chunk"] = self.max_batch
        return info

    def close(self) -> None:
        """Release the session / unhook the torch model."""
        self._session = None
        if self._tap is not None:
            self._tap.remove()
            self._tap = None

    def __repr__(self) -> str:
        return (f"Predictor({self.model_name!r}, backend={self.backend!r}, input={self.input_shape}, "
                f"threads={self.threads})")


# ----------------------------------------------------------------------------------------------- helpers
def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)


def _cl_format(ndim: int) -> torch.memory_format:
    return torch.channels_last if ndim == 4 else torch.channels_last_3d


def _weights_sha(manifest: Any) -> str | None:
    """The weights file's sha256 from a manifest (dataclass or dict; ``sha256`` at the top or under
    ``weights``/``file``)."""
    if manifest is None:
        return None
    getter = (lambda d, k: d.get(k)) if isinstance(manifest, dict) else (lambda d, k: getattr(d, k, None))
    for key in ("sha256", "weights_sha256"):
        value = getter(manifest, key)
        if isinstance(value, str) and value:
            return value
    for outer in ("weights", "file"):
        inner = getter(manifest, outer)
        if isinstance(inner, dict) and isinstance(inner.get("sha256"), str):
            return inner["sha256"]
    return None


def _output_dims(session: Any, has_features: bool) -> tuple[int, int] | None:
    """(classes, CAM channels) from the ONNX graph's static output shapes, so a cached export needs no torch
    pass at start-up; None if the graph does not state them."""
    outs = session.get_outputs()
    try:
        k = outs[0].shape[1]
        c = outs[1].shape[1] if has_features else 0
    except (IndexError, TypeError):
        return None
    return (k, c) if isinstance(k, int) and isinstance(c, int) else None


def _first_in_channels(model: nn.Module) -> int | None:
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            return int(module.in_channels if hasattr(module, "in_channels") else module.in_features)
    return None


def _input_shape(model: nn.Module, config: Any, preprocess: Any,
                 input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if preprocess is not None and getattr(preprocess, "input_size", None):
        return (int(preprocess.in_chans), *(int(s) for s in preprocess.input_size))
    if config is not None:
        chans = _first_in_channels(model) or 1
        return (chans, *(int(s) for s in config.input_size))
    raise ValueError("cannot tell the model's input shape: pass input_shape=(C, H, W) or a Preprocess")


def _cam_head(model: nn.Module, config: Any, classifier: str, cam_layer: str, feat_channels: int,
              num_classes: int) -> tuple[CamHead | None, str | None]:
    if not cam_layer:
        return None, "the model's config names no cam_layer"
    if getattr(config, "cam_kind", "cam") != "cam":
        return None, (f"its head is not global-pool + linear (cam_kind={config.cam_kind!r}), so Zhou CAM is not "
                      "defined")
    if not classifier:
        return None, "the model's config names no classifier layer"
    try:
        module = resolve_module(model, classifier)
    except ExportError as exc:
        return None, str(exc)
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        return None, f"classifier {classifier!r} has no weight"
    w = weight.detach().float().cpu()
    if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Conv1d)):
        if any(k != 1 for k in module.kernel_size) or module.groups != 1:
            return None, f"classifier {classifier!r} is not a 1×1 convolution"
        w = w.reshape(w.shape[0], w.shape[1])
    elif not isinstance(module, nn.Linear):
        return None, f"classifier {classifier!r} is a {type(module).__name__}, not Linear / 1×1 conv"
    if tuple(w.shape) != (num_classes, feat_channels):
        return None, (f"classifier weight is {tuple(w.shape)} but the CAM layer gives {feat_channels} channels "
                      f"for {num_classes} classes")
    bias = getattr(module, "bias", None)
    return CamHead(weight=w.numpy().copy(),
                   bias=None if bias is None else bias.detach().float().cpu().numpy().copy()), None


def _channels_last_ok(model: nn.Module, tap: FeatureTap, shape: tuple[int, ...]) -> bool:
    """Switch ``model`` to channels_last if that runs and gives the same outputs; else leave it as it is."""
    x = torch.randn((2, *shape), generator=torch.Generator().manual_seed(0))
    fmt = _cl_format(x.ndim)
    try:
        with torch.inference_mode():
            ref = [o.clone() for o in tap(x)]
        # Outside inference_mode: parameters converted inside it become inference tensors, and the same
        # module can then no longer be used for gradient explainers (Grad-CAM) or training.
        model.to(memory_format=fmt)
        with torch.inference_mode():
            got = tap(x.contiguous(memory_format=fmt))
        ok = all(torch.allclose(g.float(), r.float(), atol=1e-4 * max(1.0, float(r.abs().max())), rtol=0)
                 for g, r in zip(got, ref))
    except Exception as exc:  # noqa: BLE001
        log.info("channels_last failed for %s (%s); staying contiguous", type(model).__name__, exc)
        ok = False
    if not ok:
        model.to(memory_format=torch.contiguous_format)
    return ok
