"""Small synthetic CT volumes for viewer tests, built straight from numpy (no files, no engine.io).

The chest is deliberately asymmetric so orientation can be checked: a bright marker sits in the patient's
RIGHT lung, towards ANTERIOR, in the SUPERIOR half.  With the standard LPS direction (identity) array x grows to
the patient's left, y to posterior and z to superior, so the marker is at small x, small y, large z.
"""

from __future__ import annotations

import numpy as np

from engine.io.volume import Volume

MARKER_HU = 1500.0


def chest_volume(shape: tuple[int, int, int] = (24, 60, 80), spacing: tuple[float, float, float] = (2.5, 0.8, 0.6),
                 direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1), meta: dict | None = None,
                 dtype=np.int16) -> Volume:
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    array = np.full(shape, -1000.0, dtype=np.float32)
    body = ((y - cy) / (0.45 * ny)) ** 2 + ((x - cx) / (0.47 * nx)) ** 2 <= 1
    array[body] = 40.0
    for side in (-1, 1):  # two lungs at -850 HU
        lung = ((y - cy) / (0.3 * ny)) ** 2 + ((x - cx - side * 0.22 * nx) / (0.15 * nx)) ** 2 <= 1
        array[lung] = -850.0
    # the marker: patient's right (small x), anterior (small y), superior (large z)
    array[nz * 3 // 4:, int(cy - 0.2 * ny):int(cy - 0.1 * ny), int(cx - 0.27 * nx):int(cx - 0.17 * nx)] = MARKER_HU
    array[:, 0, 0] = z[:, 0, 0] * 10.0 - 1000.0   # corner voxel encodes its slice index (readout checks)
    return Volume(array=array.astype(dtype), spacing=spacing, direction=direction,
                  origin=(-100.0, -80.0, -300.0), meta=dict(meta or {"SeriesDescription": "synthetic chest",
                                                                      "Modality": "CT"}))


def marker_voxel(volume: Volume) -> tuple[int, int, int]:
    """(z, y, x) of one voxel inside the marker."""
    zs, ys, xs = np.nonzero(volume.array == MARKER_HU)
    i = len(zs) // 2
    return int(zs[i]), int(ys[i]), int(xs[i])
