"""The viewer on real chest CT from ../shared/data: the RICORD COVID series shown the radiological way.

Anatomy gives an independent check of the whole chain (reader geometry -> SliceGeometry -> Qt transform):
on screen, the heart (on the patient's left) must be right of centre, and the spine must be in the lower half
(patient supine, anterior up).
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.gui, pytest.mark.data, pytest.mark.slow]


def _screen_positions(view, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Viewport (x, y) of many slice pixels, through the same transform the ImageItem uses."""
    g = view.geometry_of_slices
    m11, m12, m21, m22, dx, dy = g.affine
    sx = m11 * (cols + 0.5) + m21 * (rows + 0.5) + dx
    sy = m12 * (cols + 0.5) + m22 * (rows + 0.5) + dy
    origin = view.graphics.mapFromScene(view.viewbox.mapViewToScene(_point(0, 0)))
    unit_x = view.graphics.mapFromScene(view.viewbox.mapViewToScene(_point(100, 0)))
    unit_y = view.graphics.mapFromScene(view.viewbox.mapViewToScene(_point(0, 100)))
    px = origin.x() + sx * (unit_x.x() - origin.x()) / 100
    py = origin.y() + sy * (unit_y.y() - origin.y()) / 100
    return px, py


def _point(x, y):
    from PySide6.QtCore import QPointF
    return QPointF(x, y)


def test_ricord_covid_series_is_radiologically_oriented(qtbot, window, shared_data, tmp_path) -> None:
    folder = shared_data / "ct-volumes" / "ricord-1a-419639-000082"
    worker = window.open_path(folder, window="lung")
    qtbot.waitUntil(lambda: worker.is_done, timeout=180_000)
    qtbot.wait(50)
    assert worker.outcome == "result", window.error_dialog and window.error_dialog.text()
    state, view = window.state, window.slice_view
    volume = state.volume
    assert volume.shape == (255, 512, 512) and state.window_preset == "lung"
    assert [view.orientation_labels[s].text() for s in ("left", "right", "top", "bottom")] == ["R", "L", "A", "P"]

    z = state.slice_index                       # mid-chest, heart level
    hu = volume.array[z]
    centre_x = view.graphics.viewport().width() / 2
    centre_y = view.graphics.viewport().height() / 2

    # the heart: soft tissue (0..100 HU) in the central chest over the heart's slices sits on the patient's left
    heart = ((volume.array[z - 30:z + 30] > 0) & (volume.array[z - 30:z + 30] < 100)).sum(axis=0)
    box = np.zeros_like(heart, dtype=bool)
    box[150:350, 150:370] = True
    rows, cols = np.nonzero(box & (heart > 0))
    weights = heart[rows, cols]
    px, _ = _screen_positions(view, rows, cols)
    screen_left, screen_right = float(weights[px < centre_x].sum()), float(weights[px >= centre_x].sum())
    assert screen_right > 1.3 * screen_left, (screen_left, screen_right)   # heart on the screen's right

    rows, cols = np.nonzero(hu > 300)           # bone: spine (posterior midline), sternum, ribs
    midline = np.abs(cols - 256) < 40
    _, py = _screen_positions(view, rows[midline], cols[midline])
    assert np.median(py) > centre_y              # the spine outweighs the sternum: posterior is down

    out = tmp_path / "ricord.png"
    assert window.grab().save(str(out))
