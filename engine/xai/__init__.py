"""Explainers: CAM, Grad-CAM, Grad-CAM++, Layer-CAM and activation maps on the input's own grid."""

from engine.xai.cam import (
    METHODS,
    ExplainError,
    LayerInfo,
    activation_maps,
    cam_target,
    default_layer,
    explain,
    heatmap_peak,
    list_layers,
    normalise_map,
    tile_maps,
    upsample_map,
)

__all__ = [
    "METHODS", "ExplainError", "LayerInfo", "activation_maps", "cam_target", "default_layer", "explain",
    "heatmap_peak", "list_layers", "normalise_map", "tile_maps", "upsample_map",
]
