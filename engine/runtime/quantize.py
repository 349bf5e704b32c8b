"""Optional int8 static quantisation of a verified fp32 export, accepted only if validation AUC holds.

    report = quantize_and_gate(predictor, calibration_x, val_x, val_y, positive_index=1)
    report.accepted        # True only if AUC(int8) >= AUC(fp32) - 0.005 on the validation set

ONNX Runtime static quantisation (QDQ, per-channel int8 weights, uint8 activations, ``reduce_range`` for CPUs
without VNNI, MinMax calibration on the given calibration inputs).  The int8 graph keeps both outputs (logits
and the CAM features, dequantised).  An accepted model is written to the export cache as the ``int8`` variant
of the same weights with the gate's numbers in its sidecar; :meth:`Predictor.from_loaded` uses it only then
(``int8="auto"``).  A rejected one is deleted: nothing ever serves an int8 model that lost accuracy.

No gate is possible without labelled validation data, so weights without an accepted int8 entry run fp32.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from engine.runtime.export import (
    ExportError,
    ExportResult,
    ExportSpec,
    _write_json_atomic,
    default_cache_dir,
    file_sha256,
)

MAX_AUC_DROP = 0.005


@dataclass
class Int8Report:
    accepted: bool
    auc_fp32: float
    auc_int8: float
    max_auc_drop: float
    n_calibration: int
    n_validation: int
    positive_index: int
    max_prob_diff: float                   # int8 vs fp32 on the validation inputs
    path: str | None = None                # the cached int8 model (accepted only)
    reason: str = ""

    @property
    def auc_drop(self) -> float:
        return self.auc_fp32 - self.auc_int8

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["auc_drop"] = self.auc_drop
        return d


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half).  Needs both classes present."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative validation example")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):           # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _reader(x: np.ndarray, batch: int = 8) -> Any:
    """An onnxruntime.quantization CalibrationDataReader over an array, in small batches."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._chunks = iter([x[i:i + batch] for i in range(0, len(x), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self._chunks, None)
            return None if chunk is None else {"input": np.ascontiguousarray(chunk, dtype=np.float32)}

    return _Reader()


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calibration: np.ndarray, *,
                  per_channel: bool = True, reduce_range: bool = True) -> Path:
    """Static QDQ quantisation of ``fp32_path`` into ``out_path`` with ``calibration`` inputs (N×C×...)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration = np.asarray(calibration, dtype=np.float32)
    if calibration.ndim < 4 or len(calibration) == 0:
        raise ValueError("calibration must be a non-empty N×C×H×W or N×C×D×H×W array")
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="lunglens-q-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        with _quiet_logs():
            try:
                quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=False)
            except Exception:  # noqa: BLE001 - pre-processing is an optimisation; quantise the raw graph then
                pre = Path(fp32_path)
            quantize_static(str(pre), str(out_path), _reader(calibration), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, extra_options={"WeightSymmetric": True})
    return out_path


def int8_spec(fp32: ExportSpec) -> ExportSpec:
    return replace(fp32, variant="int8")


def quantize_and_gate(predictor: Any, calibration_x: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *,
                      positive_index: int = 1, max_auc_drop: float = MAX_AUC_DROP,
                      cache_dir: str | Path | None = None) -> Int8Report:
    """Quantise ``predictor``'s fp32 ONNX export and keep it only if the validation AUC of the positive class
    drops by at most ``max_auc_drop``.  ``val_y`` are class indices; the AUC is positive-vs-rest."""
    from engine.runtime.session import make_session

    export: ExportResult | None = getattr(predictor, "export", None)
    if export is None or export.spec.variant != "fp32":
        raise ExportError("int8 quantisation needs a predictor on the fp32 ONNX back-end")
    val_x = np.asarray(val_x, dtype=np.float32)
    labels = np.asarray(val_y) == positive_index
    root = Path(cache_dir) if cache_dir is not None else export.path.parent
    spec = int8_spec(export.spec)
    final = root / f"{spec.stem}.onnx"
    fd, tmp_name = tempfile.mkstemp(prefix=spec.stem + ".", suffix=".tmp.onnx", dir=root)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        quantize_int8(export.path, tmp, calibration_x)
        fp32_probs = predictor.predict(val_x, features=False).probs
        session = make_session(tmp, predictor.threads)
        int8_logits = np.concatenate([session.run(None, {"input": val_x[i:i + 16]})[0]
                                      for i in range(0, len(val_x), 16)])
        from engine.runtime.predictor import softmax

        int8_probs = softmax(int8_logits.astype(np.float32))
        auc32 = roc_auc(fp32_probs[:, positive_index], labels)
        auc8 = roc_auc(int8_probs[:, positive_index], labels)
        report = Int8Report(accepted=bool(auc32 - auc8 <= max_auc_drop), auc_fp32=auc32, auc_int8=auc8,
                            max_auc_drop=max_auc_drop, n_calibration=int(len(calibration_x)),
                            n_validation=int(len(val_x)), positive_index=int(positive_index),
                            max_prob_diff=float(np.abs(int8_probs - fp32_probs).max()))
        if report.accepted:
            os.replace(tmp, final)
            report.path = str(final)
            report.reason = f"AUC {auc8:.4f} vs fp32 {auc32:.4f} (drop {auc32 - auc8:+.4f} <= {max_auc_drop})"
            result = ExportResult(path=final, spec=spec, outputs=export.outputs, exporter=export.exporter + "+int8",
                                  max_prob_diff=report.max_prob_diff, max_value_diff=float("nan"),
                                  export_seconds=0.0, onnx_sha256=file_sha256(final),
                                  extra={"int8_gate": report.to_dict()})
            meta = result.to_dict()
            meta["max_value_diff"] = None
            _write_json_atomic(root / f"{spec.stem}.json", meta)
        else:
            report.reason = (f"rejected: AUC {auc8:.4f} vs fp32 {auc32:.4f} (drop {auc32 - auc8:+.4f} > "
                             f"{max_auc_drop})")
        return report
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def accepted_int8(fp32: ExportSpec, cache_dir: str | Path | None = None) -> ExportResult | None:
    """The cached, gate-accepted int8 export for these weights, or None."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    spec = int8_spec(fp32)
    onnx_path, meta_path = root / f"{spec.stem}.onnx", root / f"{spec.stem}.json"
    if not (onnx_path.is_file() and meta_path.is_file()):
        return None
    try:
        data = json.loads(meta_path.read_text())
        if data.get("max_value_diff") is None:
            data["max_value_diff"] = float("nan")
        result = ExportResult.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    gate = result.extra.get("int8_gate") or {}
    if result.spec != spec or not gate.get("accepted") or file_sha256(onnx_path) != result.onnx_sha256:
        return None
    result.path = onnx_path
    result.from_cache = True
    return result
