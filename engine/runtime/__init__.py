"""Fast inference back-end: cached ONNX exports (keyed by weights sha) run with ONNX Runtime."""
