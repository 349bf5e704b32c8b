"""Zoom and pan of one slice view, in screen-independent units so they can be shared between panes.

``zoom`` is relative to "whole slice fits the view" (1.0); ``center`` is the point of the slice shown at the
centre of the view, in the view's scene coordinates (mm, see :class:`~viewer.model.slice_geometry.SliceGeometry`),
or None for "centre of the slice".
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_ZOOM = 0.1
MAX_ZOOM = 64.0


@dataclass(frozen=True)
class Camera:
    zoom: float = 1.0
    center: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "zoom", float(min(MAX_ZOOM, max(MIN_ZOOM, self.zoom))))
        if self.center is not None:
            object.__setattr__(self, "center", (float(self.center[0]), float(self.center[1])))

    def zoomed(self, factor: float, anchor: tuple[float, float] | None = None,
               default_center: tuple[float, float] = (0.0, 0.0)) -> Camera:
        """Zoom by ``factor`` keeping the scene point ``anchor`` (e.g. under the mouse) fixed on screen."""
        new = Camera(self.zoom * factor, self.center)
        if anchor is None:
            return new
        cx, cy = self.center if self.center is not None else default_center
        ratio = self.zoom / new.zoom  # < 1 when zooming in: the centre moves towards the anchor
        return Camera(new.zoom, (anchor[0] + (cx - anchor[0]) * ratio, anchor[1] + (cy - anchor[1]) * ratio))

    def panned(self, dx: float, dy: float, default_center: tuple[float, float] = (0.0, 0.0)) -> Camera:
        cx, cy = self.center if self.center is not None else default_center
        return Camera(self.zoom, (cx + dx, cy + dy))
