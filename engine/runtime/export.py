"""ONNX export of a weighted model, with the CAM feature map as a second output, verified and cached.

The exported graph has one input ``input`` (N×C×H×W or N×C×D×H×W float32, dynamic N) and the outputs
``logits`` (N×K) and, when the model's config names a ``cam_layer``, ``features`` (the output of that layer,
N×k×h×w / N×k×d×h×w), so class activation maps need no second (torch) pass.

Every export is checked against torch on random inputs at two batch sizes before it is used; an export that
does not match (probabilities within ``PROB_ATOL``, logits/features within ``VALUE_TOL`` relative to their
scale) is rejected with :class:`ExportError` and never written to the cache.

Exports are cached under the user cache dir (``platformdirs``; ``$LUNGLENS_CACHE_DIR`` overrides it) keyed by
the weights' sha256, the engine/torch versions, the opset and the input definition.  A cache entry is a
``<name>-<key>.onnx`` file plus a ``.json`` sidecar (written last, after verification) that records the ONNX
file's own sha256, so a truncated or edited file is detected and re-exported.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

log = logging.getLogger(__name__)

OPSET = 18
PROB_ATOL = 1e-4          # softmax probabilities: absolute
VALUE_TOL = 1e-4          # logits / features: |a - b| <= VALUE_TOL * max(1, max|b|)
EXPORT_FORMAT = 1         # bump when the graph layout (inputs/outputs/names) changes
INPUT_NAME = "input"
LOGITS_NAME = "logits"
FEATURES_NAME = "features"


class ExportError(RuntimeError):
    """A model could not be exported to ONNX, or the export does not reproduce torch's outputs."""


# ----------------------------------------------------------------------------------------------- helpers
def engine_version() -> str:
    from engine import __version__

    return __version__


def default_cache_dir() -> Path:
    """``$LUNGLENS_CACHE_DIR/onnx`` or the platform's user cache dir (``~/.cache/lunglens/onnx`` on Linux)."""
    env = os.environ.get("LUNGLENS_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "onnx"
    import platformdirs

    return Path(platformdirs.user_cache_dir("lunglens", appauthor=False)) / "onnx"


def state_sha256(model: nn.Module) -> str:
    """sha256 over the model's parameters and buffers (names, dtypes, shapes, bytes), in state_dict order.

    Used as the cache key when no weights file (and so no file sha) is known, e.g. a freshly built model.
    """
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.dtype == torch.bfloat16:
            t = t.to(torch.float32)
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def resolve_module(model: nn.Module, dotted: str) -> nn.Module:
    """``model.features.12`` style lookup with a clear error naming the model and the path."""
    try:
        return model.get_submodule(dotted)
    except AttributeError as exc:
        name = getattr(getattr(model, "model_config", None), "name", type(model).__name__)
        raise ExportError(f"model {name!r} has no submodule {dotted!r} (its config's cam_layer/classifier); "
                          "fix the ModelConfig of this model") from exc


def _first_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    if isinstance(out, dict):
        for key in ("logits", "out", "output"):
            if isinstance(out.get(key), torch.Tensor):
                return out[key]
    raise ExportError(f"model output of type {type(out).__name__} is not a logits tensor")


class FeatureTap(nn.Module):
    """``model`` wrapped to return ``(logits, features)``: features = output of ``cam_layer`` (forward hook).

    With ``cam_layer=""`` it returns ``(logits,)``.  The same wrapper drives the torch back-end and the export,
    so both produce exactly the same tensors.
    """

    def __init__(self, model: nn.Module, cam_layer: str = ""):
        super().__init__()
        self.model = model
        self.cam_layer = cam_layer
        self._captured: list[torch.Tensor] = []
        self._handle = resolve_module(model, cam_layer).register_forward_hook(self._hook) if cam_layer else None

    def remove(self) -> None:
        """Unregister the hook from the wrapped model (the wrapper is unusable afterwards)."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        self._captured.append(_first_tensor(output))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self._captured.clear()
        logits = _first_tensor(self.model(x))
        if not self.cam_layer:
            return (logits,)
        if not self._captured:
            raise ExportError(f"cam_layer {self.cam_layer!r} was not executed by the forward pass")
        features = self._captured[-1]   # last call wins (a layer reused in a loop: its final output)
        self._captured.clear()
        return logits, features


# ----------------------------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class ExportSpec:
    """What an ONNX file is a function of; its ``key`` names the cache entry."""

    model_name: str
    weights_sha256: str
    input_shape: tuple[int, ...]          # C×H×W or C×D×H×W (no batch)
    cam_layer: str = ""
    variant: str = "fp32"                 # "fp32" or "int8"
    opset: int = OPSET
    engine_version: str = field(default_factory=engine_version)
    torch_version: str = field(default_factory=lambda: torch.__version__)
    export_format: int = EXPORT_FORMAT

    @property
    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:20]

    @property
    def stem(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.model_name) or "model"
        return f"{safe}-{self.variant}-{self.key}"


@dataclass
class ExportResult:
    """A verified ONNX file and how it was made."""

    path: Path
    spec: ExportSpec
    outputs: tuple[str, ...]
    exporter: str                          # "torchscript" or "dynamo"
    max_prob_diff: float
    max_value_diff: float                  # relative to max(1, scale), see VALUE_TOL
    export_seconds: float
    onnx_sha256: str
    from_cache: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExportResult":
        spec = dict(data["spec"])
        spec["input_shape"] = tuple(spec["input_shape"])
        return cls(path=Path(data["path"]), spec=ExportSpec(**spec), outputs=tuple(data["outputs"]),
                   exporter=data["exporter"], max_prob_diff=float(data["max_prob_diff"]),
                   max_value_diff=float(data["max_value_diff"]), export_seconds=float(data["export_seconds"]),
                   onnx_sha256=data["onnx_sha256"], from_cache=bool(data.get("from_cache", False)),
                   extra=dict(data.get("extra", {})))


# ----------------------------------------------------------------------------------------------- export
@contextlib.contextmanager
def _quiet() -> Any:
    """The exporters print progress and warnings (torchvision absent, deprecations); keep the user's console
    clean.  Errors still propagate."""
    sink = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript",
                                                "torch.fx.experimental.symbolic_shapes")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_once(tap: FeatureTap, example: torch.Tensor, path: Path, *, dynamo: bool, opset: int) -> None:
    outputs = [LOGITS_NAME, FEATURES_NAME] if tap.cam_layer else [LOGITS_NAME]
    big = sum(p.numel() * p.element_size() for p in tap.parameters()) > 1_800_000_000
    with _quiet(), torch.no_grad():
        if dynamo:
            torch.onnx.export(tap, (example,), str(path), input_names=[INPUT_NAME], output_names=outputs,
                              opset_version=opset, dynamo=True, external_data=big,
                              dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                              verbose=False)
        else:
            axes = {name: {0: "batch"} for name in [INPUT_NAME, *outputs]}
            torch.onnx.export(tap, (example,), str(path), input_names=[INPUT_NAME], output_names=outputs,
                              opset_version=min(opset, 17), dynamo=False, dynamic_axes=axes,
                              do_constant_folding=True)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    scale = max(1.0, float(np.abs(b).max()) if b.size else 1.0)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / scale) if b.size else 0.0


def verify_onnx(path: Path, tap: FeatureTap, input_shape: tuple[int, ...], *,
                batch_sizes: tuple[int, ...] = (1, 3), seed: int = 0,
                session_factory: Callable[[Path], Any] | None = None) -> tuple[float, float]:
    """Run ONNX Runtime and torch on the same random inputs; returns (max prob diff, max relative diff)."""
    from engine.runtime.session import make_session

    sess = (session_factory or make_session)(path)
    gen = torch.Generator().manual_seed(seed)
    worst_prob = worst_val = 0.0
    for n in batch_sizes:
        x = torch.randn((n, *input_shape), generator=gen, dtype=torch.float32)
        with torch.inference_mode():
            ref = [t.float().numpy() for t in tap(x)]
        got = sess.run(None, {INPUT_NAME: x.numpy()})
        if len(got) != len(ref):
            return float("inf"), float("inf")
        worst_prob = max(worst_prob, float(np.abs(_softmax(got[0]) - _softmax(ref[0])).max()))
        for g, r in zip(got, ref):
            worst_val = max(worst_val, _rel_diff(np.asarray(g), r))
    return worst_prob, worst_val


def exporter_order() -> tuple[str, ...]:
    """Exporters to try, in order: ``$LUNGLENS_ONNX_EXPORTER`` (comma-separated) or torchscript, then dynamo.

    The TorchScript-based exporter is tried first because it is 3-6x faster on these CNNs (a first-time export
    is what a user waits for when opening a model) and its graphs run as fast; the torch.export-based one is the
    fallback (and takes over automatically should the TorchScript exporter disappear from torch).  Both are
    verified the same way.
    """
    env = os.environ.get("LUNGLENS_ONNX_EXPORTER", "").strip()
    if not env:
        return ("torchscript", "dynamo")
    order = tuple(x.strip() for x in env.split(",") if x.strip())
    bad = [x for x in order if x not in ("torchscript", "dynamo")]
    if bad or not order:
        raise ValueError(f"LUNGLENS_ONNX_EXPORTER must list 'torchscript' and/or 'dynamo', got {env!r}")
    return order


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: str | Path, *,
                cam_layer: str | None = None, spec: ExportSpec | None = None,
                exporters: tuple[str, ...] | None = None, opset: int = OPSET) -> ExportResult:
    """Export ``model`` (eval, fp32) to ``path`` and verify it against torch.

    ``input_shape`` is C×H×W or C×D×H×W.  ``cam_layer`` defaults to ``model.model_config.cam_layer``.
    Tries the exporters of :func:`exporter_order` in turn; the first export that verifies wins.
    Raises :class:`ExportError` with every attempt's reason when none does.
    """
    exporters = exporters or exporter_order()
    path = Path(path)
    config = getattr(model, "model_config", None)
    if cam_layer is None:
        cam_layer = getattr(config, "cam_layer", "") or ""
    name = getattr(config, "name", type(model).__name__)
    input_shape = tuple(int(s) for s in input_shape)
    if spec is None:
        spec = ExportSpec(model_name=name, weights_sha256=state_sha256(model), input_shape=input_shape,
                          cam_layer=cam_layer, opset=opset)
    was_training = model.training
    model.eval()
    tap = FeatureTap(model, cam_layer).eval()
    example = torch.randn((2, *input_shape), generator=torch.Generator().manual_seed(1))
    reasons: list[str] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        for exporter in exporters:
            fd, tmp_name = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.onnx", dir=path.parent)
            os.close(fd)
            tmp = Path(tmp_name)
            t0 = time.perf_counter()
            try:
                _export_once(tap, example, tmp, dynamo=(exporter == "dynamo"), opset=opset)
                seconds = time.perf_counter() - t0
                prob_diff, value_diff = verify_onnx(tmp, tap, input_shape)
            except Exception as exc:  # noqa: BLE001 - any exporter failure means "try the next one"
                reasons.append(f"{exporter}: {_reason(exc)}")
                _unlink(tmp)
                continue
            if prob_diff > PROB_ATOL or value_diff > VALUE_TOL:
                reasons.append(f"{exporter}: outputs differ from torch (probabilities by {prob_diff:.2e}, "
                               f"logits/features by {value_diff:.2e} relative)")
                _unlink(tmp)
                continue
            os.replace(tmp, path)
            outputs = (LOGITS_NAME, FEATURES_NAME) if cam_layer else (LOGITS_NAME,)
            return ExportResult(path=path, spec=spec, outputs=outputs, exporter=exporter,
                                max_prob_diff=prob_diff, max_value_diff=value_diff, export_seconds=seconds,
                                onnx_sha256=file_sha256(path))
    finally:
        tap.remove()
        model.train(was_training)
    raise ExportError(f"could not export model {name!r} to ONNX: " + "; ".join(reasons)
                      + ". The torch back-end still works (backend='torch').")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _reason(exc: BaseException) -> str:
    """One readable line for an exporter failure: the exception type, its first line and, where the exporter
    names it, the unsupported operator."""
    text = _ANSI.sub("", str(exc)).strip()
    first = text.splitlines()[0][:200] if text else ""
    op = re.search(r"(aten::[A-Za-z0-9_.]+|torch\.ops\.aten\.[A-Za-z0-9_.]+)", text)
    detail = f" (operator {op.group(1)})" if op and op.group(1) not in first else ""
    return f"{type(exc).__name__}: {first}{detail}"


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


# ----------------------------------------------------------------------------------------------- cache
def cached_export(model: nn.Module, input_shape: tuple[int, ...], *, weights_sha256: str | None = None,
                  model_name: str | None = None, cam_layer: str | None = None,
                  cache_dir: str | Path | None = None, refresh: bool = False, tune: bool = True) -> ExportResult:
    """The verified ONNX export of ``model`` from the cache, exporting it first if needed.

    ``weights_sha256`` is the sha of the weights file the model was loaded from (its manifest's); without it
    the sha of the in-memory state is used.  ``refresh=True`` re-exports even when a valid entry exists.
    A new export is also tuned on this machine (``engine.runtime.session.tune_session``: ORT graph-optimisation
    level and batch chunk size), recorded in ``extra["session"]`` and used by :class:`Predictor`
    (``tune=False`` skips that).
    """
    config = getattr(model, "model_config", None)
    if cam_layer is None:
        cam_layer = getattr(config, "cam_layer", "") or ""
    spec = ExportSpec(model_name=model_name or getattr(config, "name", type(model).__name__),
                      weights_sha256=weights_sha256 or state_sha256(model),
                      input_shape=tuple(int(s) for s in input_shape), cam_layer=cam_layer)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    onnx_path = root / f"{spec.stem}.onnx"
    meta_path = root / f"{spec.stem}.json"
    if not refresh:
        hit = _read_entry(onnx_path, meta_path, spec)
        if hit is not None:
            if tune and "chunk" not in (hit.extra.get("session") or {}):   # older entry: tune once now
                _tune_into(hit)
                _write_json_atomic(meta_path, {**hit.to_dict(), "from_cache": False})
            return hit
        if spec.key in _FAILED:   # failed before in this process: don't make the user wait for it again
            raise ExportError(_FAILED[spec.key])
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the ONNX cache folder {root} ({exc}); set LUNGLENS_CACHE_DIR to a "
                          "writable folder") from exc
    try:
        result = export_onnx(model, spec.input_shape, onnx_path, cam_layer=cam_layer, spec=spec)
    except ExportError as exc:
        _FAILED[spec.key] = str(exc)
        raise
    _FAILED.pop(spec.key, None)
    if tune:
        _tune_into(result)
    _write_json_atomic(meta_path, result.to_dict())
    return result


def _tune_into(result: ExportResult) -> None:
    from engine.runtime.session import tune_session

    try:
        result.extra["session"] = tune_session(result.path, result.spec.input_shape)
    except Exception as exc:  # noqa: BLE001 - tuning is an optimisation, never a failure
        result.extra["session"] = {"optimization": "all", "reason": f"tuning failed: {exc}"}


# spec.key -> reason, for exports that failed in this process (not persisted: a newer torch may succeed).
_FAILED: dict[str, str] = {}


def _read_entry(onnx_path: Path, meta_path: Path, spec: ExportSpec) -> ExportResult | None:
    if not (onnx_path.is_file() and meta_path.is_file()):
        return None
    try:
        data = json.loads(meta_path.read_text())
        result = ExportResult.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable ONNX cache entry %s (%s)", meta_path, exc)
        return None
    if result.spec != spec:
        return None
    try:
        if file_sha256(onnx_path) != result.onnx_sha256:
            log.warning("ONNX cache entry %s does not match its recorded sha256; re-exporting", onnx_path)
            return None
    except OSError:
        return None
    result.path = onnx_path
    result.from_cache = True
    return result


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.stem + ".", suffix=".tmp.json", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


def clear_cache(cache_dir: str | Path | None = None) -> int:
    """Delete every cached export (``.onnx`` + ``.json``) under the cache dir; returns the number of files."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    n = 0
    if root.is_dir():
        for p in root.iterdir():
            if p.suffix in (".onnx", ".json", ".data") and p.is_file():
                _unlink(p)
                n += 1
    return n
