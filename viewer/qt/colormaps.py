"""Colour look-up tables for heatmap layers (pyqtgraph's copies of the perceptual matplotlib maps)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pyqtgraph as pg

from viewer.model.layers import DIVERGING_COLORMAPS, HEATMAP_COLORMAPS


@lru_cache(maxsize=None)
def heatmap_lut(name: str, n: int = 256) -> np.ndarray:
    """(n, 3) uint8 RGB table for colour map ``name`` (one of ``HEATMAP_COLORMAPS``)."""
    if name not in HEATMAP_COLORMAPS + DIVERGING_COLORMAPS:
        raise ValueError(f"unknown heatmap colour map {name!r}")
    lut = pg.colormap.get(name).getLookupTable(nPts=n, alpha=False)
    lut = np.ascontiguousarray(lut[:, :3], dtype=np.uint8)
    lut.setflags(write=False)
    return lut
