"""Fast inference back-end: cached ONNX exports (keyed by weights sha) run with ONNX Runtime.

``Predictor.from_loaded(engine.weights.load_default(name))`` is the entry point for the viewer and batch
screening: ``predict(batch) -> Prediction(probs, logits, features)`` and ``cam(features, class_index)``.
Torch stays for training and gradient-based explainers.
"""

from engine.runtime.export import (
    ExportError,
    ExportResult,
    ExportSpec,
    FeatureTap,
    cached_export,
    clear_cache,
    default_cache_dir,
    export_onnx,
    state_sha256,
)
from engine.runtime.predictor import CamHead, Prediction, Predictor, softmax
from engine.runtime.session import default_threads, make_session, session_options

__all__ = [
    "CamHead", "ExportError", "ExportResult", "ExportSpec", "FeatureTap", "Prediction", "Predictor",
    "cached_export", "clear_cache", "default_cache_dir", "default_threads", "export_onnx", "make_session",
    "session_options", "softmax", "state_sha256",
]
