"""MPR screenshots of a real CT with a model's heatmap in all three planes (for the docs and the issue note).

    python -m tests.viewer.mpr_screenshots OUT_DIR [SERIES_FOLDER ...]

The heatmap is real output of the viewer's AI workflow (screening + CAM through the one preprocessing
definition and its inverse), made by the test suite's hand-set ground-glass detectors (``probe_model``: they
light up on -600..-300 HU, i.e. ground-glass opacities and partial-volume edges -- not a trained COVID model):

* ``<series>_2x2_3d.png`` -- the 3-D probe: one volume map, shown natively in every plane;
* ``<series>_1x3_2d.png`` -- the 2-D probe computed slice by slice (every axial slice, as scrolling through the
  scan fills it), stacked into the coronal and sagittal planes.

The crosshair is put on the hottest ground-glass voxel of the map, so all three planes cut through it.  Run under Xvfb with
``QT_QPA_PLATFORM=xcb`` or offscreen.  Not a test: it needs the series and takes a minute or two.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

DEFAULT_SERIES = (Path("/work/shared/data/ct-volumes/ricord-1a-419639-000082"),
                  Path("/work/shared/data/ct-volumes/lung-pet-ct-dx-A0002"))


def _hottest_ground_glass(layer, volume) -> tuple[int, int, int]:
    """The hottest voxel of the map that is ground glass (-750..-300 HU) inside the central part of the scan
    (the probes also respond to partial-volume edges of bowel gas and the skin: not what a reader looks at)."""
    heat = np.nan_to_num(layer.data, nan=0.0)
    hu = volume.array
    nz, ny, nx = hu.shape
    box = np.zeros(hu.shape, bool)
    box[int(0.3 * nz):int(0.9 * nz), int(0.15 * ny):int(0.8 * ny), int(0.1 * nx):int(0.9 * nx)] = True
    candidates = box & (hu > -750) & (hu < -300)
    score = np.where(candidates, heat, -1.0)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(score)), score.shape))  # type: ignore[return-value]


def shoot(series: Path, out_dir: Path, weights: Path) -> list[Path]:
    from viewer.qt.ai_workflow import wait_until
    from viewer.qt.main_window import MainWindow
    from viewer.qt.screenshot import dispose, render_png
    from viewer.workers.loading import choose_default_series, discover_all, load_series
    from tests.viewer.probe_model import PROBE_2D, PROBE_3D

    found = discover_all([series])
    chosen = choose_default_series(found.series)
    volume = load_series(chosen)
    name = series.name.split("-")[0] + "-" + series.name.split("-")[-1]
    written = []
    for model, layout, tag in ((PROBE_3D, "2x2", "3d"), (PROBE_2D, "1x3", "2d")):
        window = MainWindow()
        try:
            window.resize(1280, 860)
            window.ai.add_weights(weights)
            window.show_volume(volume, chosen)
            ai = window.ai
            ai.select_model(model)
            ai.set_explainer("cam")
            worker = ai.screen()
            if not ai.wait_idle(600) or worker.outcome != "result":
                raise RuntimeError(f"screening with {model} failed: {worker.outcome}")
            ai.show_heatmap(True)
            ai.wait_idle(600)
            if tag == "2d":        # fill the axial slices one by one, as scrolling does
                for z in range(volume.shape[0]):
                    window.state.slice_index = z
                    wait_until(lambda: not ai.busy, 120)
            layer = window.state.active_heatmap
            if layer is None:
                raise RuntimeError(f"{model} produced no heatmap")
            window.mpr.set_layout(layout)
            window.state.position = _hottest_ground_glass(layer, volume)
            out = out_dir / f"{name}_{layout}_{tag}.png"
            render_png(window, out, size=(1600, 900))
            z, y, x = window.state.position
            print(f"{out}: {volume.shape} voxels {volume.spacing} mm, {model} CAM, crosshair at z {z}, y {y}, x {x}, "
                  f"computed slices {int(np.isfinite(layer.data).any(axis=(1, 2)).sum())}/{volume.shape[0]}")
            written.append(out)
        finally:
            dispose(window)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(__doc__)
        return 2
    out_dir = Path(argv[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    folders = [Path(p) for p in argv[1:]] or [p for p in DEFAULT_SERIES if p.is_dir()]

    from PySide6.QtWidgets import QApplication

    import viewer.qt  # noqa: F401
    from tests.viewer.probe_model import PROBE_2D, PROBE_3D, registered_probes, save_probe

    app = QApplication.instance() or QApplication([])  # noqa: F841
    with registered_probes(), tempfile.TemporaryDirectory(prefix="lunglens-mpr-shots-") as tmp:
        weights = Path(tmp) / "weights"
        for model in (PROBE_2D, PROBE_3D):
            save_probe(weights, model)
        for folder in folders:
            shoot(folder, out_dir, weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
