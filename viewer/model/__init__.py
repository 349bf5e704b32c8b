"""Qt-free state of the viewer (napari-style): what is open and how it is shown, with plain-Python events.

``ViewerState`` (volume, crosshair position / slice, window/level, camera, layers, cursor readout),
``SyncGroup`` (link properties of several states), layers (``ImageLayer``, ``HeatmapLayer``), window presets and
``SliceGeometry`` (radiological orientation).  Must never import Qt (import-linter contract in pyproject.toml).
"""

from viewer.model.camera import Camera
from viewer.model.events import EmitterGroup, Event, EventEmitter
from viewer.model.layers import HEATMAP_COLORMAPS, HeatmapLayer, ImageLayer, Layer, LayerList
from viewer.model.slice_geometry import ScreenLabels, SliceGeometry, anatomical_label
from viewer.model.sync import PROPERTIES as SYNC_PROPERTIES
from viewer.model.sync import SyncGroup
from viewer.model.viewer_state import CursorReadout, ViewerState
from viewer.model.window_level import PRESET_LABELS, PRESETS, WindowLevel, dicom_window

__all__ = [
    "Camera", "CursorReadout", "EmitterGroup", "Event", "EventEmitter", "HEATMAP_COLORMAPS", "HeatmapLayer",
    "ImageLayer", "Layer", "LayerList", "PRESETS", "PRESET_LABELS", "SYNC_PROPERTIES", "ScreenLabels",
    "SliceGeometry", "SyncGroup", "ViewerState", "WindowLevel", "anatomical_label", "dicom_window",
]
