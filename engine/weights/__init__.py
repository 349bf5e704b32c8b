"""Weights as safetensors + a JSON manifest (sha256, config, preprocessing, metrics, data provenance)."""
