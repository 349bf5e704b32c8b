"""Window/level (a.k.a. width/centre) in HU, the standard chest presets, and the DICOM's own window.

A window maps HU ``[level - width/2, level + width/2]`` to black..white.  Presets are the usual chest-CT
settings; ``dicom`` is whatever the series header recommends (first value of WindowWidth/WindowCenter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_WIDTH = 1.0


@dataclass(frozen=True)
class WindowLevel:
    """Width and level (centre) in HU; ``low``/``high`` are the HU shown as black and white."""

    width: float
    level: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "width", max(MIN_WIDTH, float(self.width)))
        object.__setattr__(self, "level", float(self.level))

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2

    @classmethod
    def from_range(cls, low: float, high: float) -> WindowLevel:
        return cls(width=high - low, level=(high + low) / 2)

    def adjusted(self, d_width: float = 0.0, d_level: float = 0.0) -> WindowLevel:
        return WindowLevel(self.width + d_width, self.level + d_level)

    def __str__(self) -> str:
        return f"W {self.width:g} / L {self.level:g}"


def apply_window(values: np.ndarray, window: WindowLevel) -> np.ndarray:
    """Grey levels (uint8) of ``values`` (HU) through ``window``: ``low`` -> 0, ``high`` -> 255, linear between.

    The one windowing function of LungLens displays and exports, so what is drawn can be tested without Qt.
    """
    scaled = np.subtract(values, window.low, dtype=np.float32)
    scaled *= np.float32(255.0 / window.width)
    scaled += np.float32(0.5)                   # round to nearest
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return scaled.astype(np.uint8)


def grey_to_rgbx(grey: np.ndarray) -> np.ndarray:
    """(rows, cols, 4) uint8 opaque grey image from (rows, cols) uint8 -- the layout Qt paints fastest."""
    packed = grey.astype(np.uint32) * np.uint32(0x010101) | np.uint32(0xFF000000)
    return packed.view(np.uint8).reshape(grey.shape + (4,)) if packed.dtype.byteorder in ("=", "<") and \
        np.little_endian else _rgbx_slow(grey)


def _rgbx_slow(grey: np.ndarray) -> np.ndarray:
    rgbx = np.empty(grey.shape + (4,), dtype=np.uint8)
    rgbx[..., :3] = grey[..., None]
    rgbx[..., 3] = 255
    return rgbx


# name -> (label shown in menus, window)
PRESETS: dict[str, WindowLevel] = {
    "lung": WindowLevel(1500, -600),
    "mediastinum": WindowLevel(350, 50),
    "bone": WindowLevel(2000, 400),
}
PRESET_LABELS = {"lung": "Lung", "mediastinum": "Mediastinum", "bone": "Bone", "dicom": "DICOM"}
PRESET_SHORTCUTS = {"lung": "1", "mediastinum": "2", "bone": "3", "dicom": "4"}

# 8-bit images (PNG/JPEG slices) are already windowed: show them as stored.
FULL_8BIT = WindowLevel(256, 127.5)


def _first_number(value: Any) -> float | None:
    """WindowCenter/Width may be a number, a list, a pydicom MultiValue or a backslash-separated string."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        items = list(value)
        return _first_number(items[0]) if items else None
    if isinstance(value, bytes):
        value = value.decode("ascii", "ignore")
    if isinstance(value, str):
        value = value.split("\\")[0].strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # reject NaN


def dicom_window(meta: dict) -> WindowLevel | None:
    """The window recommended by the series header, or None if it has none (or an unusable one)."""
    width = _first_number(meta.get("WindowWidth"))
    level = _first_number(meta.get("WindowCenter"))
    if width is None or level is None or width < MIN_WIDTH:
        return None
    return WindowLevel(width, level)
