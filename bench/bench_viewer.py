"""Viewer responsiveness benchmark (offscreen Qt): slice-scroll frame time and GUI stalls while a scan loads.

1. ``scroll``: a synthetic 300x512x512 float32 CT in the main window (1280x860); each frame = one
   ``ViewerState.scroll`` + a synchronous repaint of the slice view (the whole cost of a wheel notch).
2. ``show_volume``: time to put a loaded 300-slice volume on screen (layers, info panel, first paint).
3. ``load_stall``: a phantom DICOM series is written to a temporary folder and opened with
   ``MainWindow.open_path`` (worker thread); a 5 ms QTimer measures the event loop meanwhile.  The longest gap
   between ticks is the worst GUI freeze a user could feel during loading.

    python -m bench.bench_viewer [--slices 300] [--size 512] [--load-slices 120] [--frames 200]

Prints one JSON object.  Timings on a machine shared with other jobs are noisy: see ``load_average``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    pick = lambda q: round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"median_ms": pick(0.5), "p95_ms": pick(0.95), "max_ms": round(1000 * ordered[-1], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--load-slices", type=int, default=120)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args(argv)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    import viewer.qt  # noqa: F401 - row-major pyqtgraph
    from engine.io.volume import Volume
    from engine.phantom import make_phantom, write_dicom_series
    from viewer.qt.main_window import MainWindow
    from viewer.qt.screenshot import dispose, settle

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    n, s = args.slices, args.size
    volume = Volume(array=rng.normal(-500, 400, (n, s, s)).astype(np.float32), spacing=(1.0, 0.7, 0.7))
    result: dict = {"benchmark": "viewer", "platform": platform.platform(), "python": sys.version.split()[0],
                    "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
                    "volume": [n, s, s]}

    window = MainWindow()
    window.resize(1280, 860)
    window.show()
    settle()
    started = time.perf_counter()
    window.show_volume(volume)
    window.slice_view.graphics.viewport().repaint()
    result["show_volume_ms"] = round(1000 * (time.perf_counter() - started), 1)

    viewport = window.slice_view.graphics.viewport()
    frames = []
    for i in range(args.frames):
        t = time.perf_counter()
        window.state.scroll(1 if (i // 50) % 2 == 0 else -1)
        viewport.repaint()
        frames.append(time.perf_counter() - t)
    result["scroll"] = _percentiles(frames)

    with tempfile.TemporaryDirectory(prefix="lunglens-bench-viewer-") as tmp:
        phantom = make_phantom((args.load_slices, s, s), (2.5, 0.7, 0.7), seed=3, lesions=2)
        write_dicom_series(phantom.volume, Path(tmp) / "series", uid_seed="bench-viewer")
        ticks: list[float] = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start(5)
        t = time.perf_counter()
        worker = window.open_path(Path(tmp) / "series")
        while not worker.is_done:
            app.processEvents()
            time.sleep(0.001)
        load_s = time.perf_counter() - t
        app.processEvents()
        timer.stop()
        gaps = np.diff(ticks) if len(ticks) > 1 else np.array([load_s])
        result["load_stall"] = {"series": [args.load_slices, s, s], "load_s": round(load_s, 2),
                                "outcome": worker.outcome, "ticks": len(ticks),
                                "max_gap_ms": round(1000 * float(gaps.max()), 1),
                                "p95_gap_ms": round(1000 * float(np.percentile(gaps, 95)), 1),
                                "median_gap_ms": round(1000 * float(statistics.median(gaps)), 1)}
    dispose(window)
    del window
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
