"""Per-model input definition (window, crop, resize, normalise) and its inverse for heatmaps."""

from engine.preprocess.definition import Preprocess, SliceGeometry, lung_bounding_box, lung_mask, resize

__all__ = ["Preprocess", "SliceGeometry", "lung_bounding_box", "lung_mask", "resize"]
