"""``lunglens``: the desktop viewer's entry point.

    lunglens [PATH] [--demo] [--screenshot OUT.png] [--slice N] [--window lung|mediastinum|bone|dicom]
             [--layout 1x1|1x3|2x2]
             [--model NAME [--explainer gradcam] [--compare NAME2] [--weights DIR] [--backend auto]]

PATH is a DICOM file/folder/DICOMDIR, a NIfTI/NRRD/MHA file or PNG/JPEG slices; ``--demo`` opens the bundled
synthetic chest CT.  ``--screenshot`` renders offscreen, writes the PNG and exits (tests, docs).  On a machine
without a display (Linux with neither DISPLAY nor WAYLAND_DISPLAY, and no QT_QPA_PLATFORM chosen) the viewer
falls back to exactly that: it renders to a PNG in the user cache folder, says where, and exits 0.

``--model`` screens the scan with a model that has weights (shipped ones, or ``--weights DIR``), goes to the
most suspicious slice (unless ``--slice``) and shows its heatmap (``--explainer``); ``--compare NAME2`` opens
compare mode with a second model (repeat for more).  With ``--screenshot`` this all happens offscreen before the
picture is taken (of the compare window when comparing).  Research use only, not a diagnosis.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

WINDOW_CHOICES = ("lung", "mediastinum", "bone", "dicom")
LAYOUT_CHOICES = ("1x1", "1x3", "2x2")   # viewer.model.mpr.LAYOUTS (not imported: --help stays fast)
EXPLAINER_CHOICES = ("cam", "gradcam", "gradcampp", "layercam")
MODEL_TIMEOUT_S = 3600.0   # --screenshot waits this long at most for screening + heatmaps
COMPARE_SCREENSHOT_SIZE = (1680, 900)   # compare mode: two or more panes side by side


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lunglens", description="LungLens chest-CT viewer (research use only, not a diagnosis).")
    parser.add_argument("path", nargs="?", type=Path, help="DICOM file/folder/DICOMDIR, NIfTI, NRRD/MHA or PNG/JPEG")
    parser.add_argument("--demo", action="store_true", help="open the bundled synthetic chest CT")
    parser.add_argument("--screenshot", type=Path, metavar="OUT.png",
                        help="render the view offscreen to this PNG and exit")
    parser.add_argument("--slice", type=int, metavar="N",
                        help="axial slice to show: 0-based index along the slice normal (default: middle)")
    parser.add_argument("--window", choices=WINDOW_CHOICES, help="window/level preset (default: lung)")
    parser.add_argument("--layout", choices=LAYOUT_CHOICES,
                        help="views: 1x1 axial (default), 1x3 axial|coronal|sagittal, 2x2 the three planes + "
                             "the crosshair readout")
    ai = parser.add_argument_group("AI screening (research use only, not a diagnosis)")
    ai.add_argument("--model", metavar="NAME", help="screen the scan with this model and show its heatmap")
    ai.add_argument("--explainer", choices=EXPLAINER_CHOICES, help="heatmap method (default: gradcam)")
    ai.add_argument("--compare", action="append", default=[], metavar="NAME2",
                    help="compare --model with this model side by side (repeat for more panes)")
    ai.add_argument("--weights", action="append", default=[], type=Path, metavar="DIR",
                    help="weights folder (manifest.json + model.safetensors) or a folder of them, used before "
                         "the shipped weights (repeatable)")
    ai.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto",
                    help="inference back-end (default auto: ONNX Runtime when its export verifies, else torch)")
    return parser


def display_available(environ: dict | None = None, platform: str | None = None) -> bool:
    """False only where Qt could not open a window: Linux/BSD without X11/Wayland and no platform chosen."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if env.get("QT_QPA_PLATFORM"):
        return True   # the user chose a platform (offscreen, vnc, eglfs, ...): respect it
    if not platform.startswith(("linux", "freebsd", "openbsd")):
        return True   # Windows and macOS always have a window system
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def default_screenshot_path(name: str) -> Path:
    """Where a display-less run puts its picture: the LungLens cache (``LUNGLENS_CACHE_DIR`` or the user cache)."""
    from engine.phantom.demo import cache_dir
    return cache_dir() / "screenshots" / f"{name}.png"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.demo and args.path is not None:
        parser.error("give a PATH or --demo, not both")
    if (args.compare or args.explainer) and not args.model:
        parser.error("--compare and --explainer need --model NAME")

    screenshot, fallback_reason = args.screenshot, None
    if screenshot is None and not display_available():
        fallback_reason = "no display available (neither DISPLAY nor WAYLAND_DISPLAY is set)"
    if (screenshot is not None or fallback_reason) and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    elif not os.environ.get("QT_QPA_PLATFORM") and sys.platform.startswith("linux"):
        # a display is announced but may be unusable (X server gone, xcb libraries missing): let Qt fall back to
        # offscreen instead of aborting, and notice it below
        native = "wayland;xcb" if os.environ.get("WAYLAND_DISPLAY") else "xcb"
        os.environ["QT_QPA_PLATFORM"] = f"{native};offscreen"
        app = _application()
        if app.platformName() == "offscreen":
            where = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY")
            fallback_reason = (f"could not open a window on display {where!r} (see Qt's message above; on Linux "
                               f"Qt needs libxcb-cursor0 and the other xcb libraries)")
    if fallback_reason and screenshot is None:
        name = "demo" if args.demo or args.path is None else _safe_name(args.path)
        screenshot = default_screenshot_path(name)

    path = args.path
    if screenshot is None:
        return _run_gui(path, args)   # the demo, if asked for, is prepared in the background there
    if args.demo or (fallback_reason and path is None):
        try:
            from engine.phantom import demo_scan_path
            path = demo_scan_path()
        except Exception as exc:  # noqa: BLE001 - say what failed instead of a traceback
            print(f"lunglens: could not prepare the demo scan: {exc}", file=sys.stderr)
            return 2

    return _render_and_exit(path, screenshot, args, fallback_reason=fallback_reason)


_QUIET_QT_MESSAGES = ("This plugin does not support propagateSizeHints()",)   # offscreen plugin chatter


def _qt_message(mode, context, message: str) -> None:
    if message not in _QUIET_QT_MESSAGES:
        print(message, file=sys.stderr)


def _application():
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    import viewer.qt  # noqa: F401 - configures pyqtgraph (row-major images) once

    if QApplication.instance() is None:
        qInstallMessageHandler(_qt_message)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("LungLens")
    app.setOrganizationName("LungLens")
    app.setDesktopFileName("lunglens")   # matches installer/linux/lunglens.desktop (taskbar icon on Wayland)
    icon = Path(__file__).resolve().parents[1] / "resources" / "icons" / "lunglens.png"   # checkout or bundle
    if icon.is_file():
        from PySide6.QtGui import QIcon
        app.setWindowIcon(QIcon(str(icon)))
    return app


def _run_gui(path: Path | None, args: argparse.Namespace) -> int:
    app = _application()
    from viewer.qt.main_window import MainWindow
    from viewer.qt.screenshot import dispose

    from viewer.workers import worker_pool

    window = MainWindow()
    if not _setup_models(window, args):
        dispose(window)
        del window
        return 2
    if args.layout:
        window.mpr.set_layout(args.layout)   # MPR panes (issue 10)
    window.show()
    if args.model:
        window.ai.request_autorun(args.model, explainer=args.explainer, compare=args.compare,
                                  slice_index=args.slice)
    if args.demo:
        window.open_demo(slice_index=args.slice, window=args.window)
    elif path is not None:
        window.open_path(path, slice_index=args.slice, window=args.window)
    code = app.exec()
    dispose(window)
    del window
    worker_pool().waitForDone(-1)   # e.g. a first-run demo generation that cannot be interrupted
    return int(code)


def _render_and_exit(path: Path | None, out: Path, args: argparse.Namespace, *,
                     fallback_reason: str | None = None) -> int:
    from engine.io.errors import VolumeError
    from viewer.workers.loading import Discovery, choose_default_series, discover_all, load_series, require_series

    app = _application()  # noqa: F841 - must exist before any widget
    from viewer.qt.main_window import MainWindow
    from viewer.qt.screenshot import SCREENSHOT_SIZE, dispose, render_png

    found, chosen, volume = Discovery([]), None, None
    if path is not None:
        try:
            found = discover_all([path])
            require_series([Path(path)], found)
            chosen = choose_default_series(found.series)
            volume = load_series(chosen)
        except VolumeError as exc:
            print(f"lunglens: cannot open {path}: {exc}", file=sys.stderr)
            return 2
        if args.slice is not None and not 0 <= args.slice < volume.shape[0]:
            print(f"lunglens: --slice {args.slice} is outside 0..{volume.shape[0] - 1} "
                  f"({volume.shape[0]} slices in {path})", file=sys.stderr)
            return 2

    window = MainWindow()
    try:
        if not _setup_models(window, args):
            return 2
        target, model_lines = window, []
        if volume is not None:
            window.show_discovery(found, str(path))
            window.show_volume(volume, chosen, slice_index=args.slice, window=args.window)
            if args.layout:
                window.mpr.set_layout(args.layout)   # MPR panes (issue 10)
            if args.window and volume.is_hu and window.state.window_preset != args.window:
                print(f"lunglens: this series has no {args.window!r} window; showing {window.state.window}",
                      file=sys.stderr)
            if args.model:
                outcome = _screen_for_screenshot(window, args)
                if outcome is None:
                    return 2
                target, model_lines = outcome
        elif args.model:
            print("lunglens: --model needs a scan to screen (PATH or --demo)", file=sys.stderr)
            return 2
        written = render_png(target, out, COMPARE_SCREENSHOT_SIZE if target is not window else SCREENSHOT_SIZE)
        summary = _summary(window) if volume is not None else "no scan open"
        if model_lines:
            summary = "\n".join([summary, *model_lines])
    except OSError as exc:
        print(f"lunglens: {exc}", file=sys.stderr)
        return 2
    finally:
        dispose(window)
        del window
    if fallback_reason:
        print(f"lunglens: {fallback_reason}, so the viewer rendered offscreen instead of opening a window.")
    print(f"Screenshot: {written}")
    print(summary)
    return 0


def _setup_models(window, args: argparse.Namespace) -> bool:
    """Back-end and extra weights folders for the window's AI workflow; False (after saying why) if unusable."""
    ai = window.ai
    ai.backend = args.backend
    for folder in args.weights:
        try:
            ai.add_weights(folder)
        except (ValueError, OSError) as exc:
            print(f"lunglens: --weights {folder}: {exc}", file=sys.stderr)
            return False
    for name in [args.model, *args.compare] if args.model else []:
        try:
            ai.catalog.get(name)
        except KeyError as exc:
            print(f"lunglens: {exc.args[0]}", file=sys.stderr)
            return False
    return True


def _screen_for_screenshot(window, args: argparse.Namespace):
    """Screen with --model (blocking, through the same workers as the GUI), go to the most suspicious slice,
    compute the heatmap, open compare mode if asked; returns (widget to grab, summary lines) or None."""
    ai = window.ai
    name = ai.catalog.get(args.model).key
    ai.select_model(name)
    if args.explainer:
        ai.set_explainer(args.explainer)
    failures: list[str] = []
    worker = ai.screen()
    worker.error.connect(lambda exc, _text: failures.append(f"{type(exc).__name__}: {exc}"))
    if not ai.wait_idle(MODEL_TIMEOUT_S) or worker.outcome != "result":
        why = failures[0] if failures else f"screening did not finish ({worker.outcome or 'timed out'})"
        print(f"lunglens: screening with {name} failed: {why}", file=sys.stderr)
        return None
    result = ai.results[name]
    if args.slice is None and result.top_slices:
        ai.go_to_slice(result.top_slices[0])
    ai.show_heatmap(True)
    ai.wait_idle(MODEL_TIMEOUT_S)
    lines = [result.summary()]
    target = window
    if args.compare:
        compare = ai.open_compare([name, *args.compare])
        ai.wait_idle(MODEL_TIMEOUT_S)
        lines += [compare.results[m].summary() for m in compare.results if m != name]
        target = compare
    return target, lines


def _summary(window) -> str:
    state = window.state
    volume = state.volume
    nz, ny, nx = volume.shape
    what = volume.meta.get("SeriesDescription") or (volume.source[0].parent.name if volume.source else "volume")
    preset = state.window_preset
    window_text = f"{preset} window ({state.window})" if preset else str(state.window)
    return (f"{what}: {nx}×{ny}, {nz} slices, {volume.spacing[2]:.2f}×{volume.spacing[1]:.2f}×"
            f"{volume.spacing[0]:.2f} mm, slice {state.slice_index + 1}/{nz}, {window_text}")


def _safe_name(path: Path) -> str:
    name = (path.name or "scan").split(".")[0]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "scan"


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.freeze_support()   # a frozen build of this script: spawned helpers re-enter here
    sys.exit(main())
