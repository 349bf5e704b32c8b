"""``lunglens`` on the command line: --screenshot, --slice/--window, bad input, and no-display fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QImage

from viewer.app import display_available, main

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("env, platform, expected", [
    ({}, "linux", False),
    ({"DISPLAY": ":0"}, "linux", True),
    ({"WAYLAND_DISPLAY": "wayland-0"}, "linux", True),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", True),
    ({}, "win32", True),
    ({}, "darwin", True),
])
def test_display_detection(env, platform, expected) -> None:
    assert display_available(env, platform) is expected


def _png(path: Path) -> np.ndarray:
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_RGB888)
    assert not image.isNull()
    h, w = image.height(), image.width()
    data = np.frombuffer(image.constBits(), np.uint8, image.bytesPerLine() * h).reshape(h, image.bytesPerLine())
    return data[:, : w * 3].reshape(h, w, 3).copy()   # copy: the QImage owns the buffer


def test_screenshot_renders_and_exits(qapp, leak_guard, scan_folders, tmp_path, capsys) -> None:
    out = tmp_path / "shot.png"
    assert main([str(scan_folders["one"]), "--screenshot", str(out), "--slice", "20", "--window", "lung"]) == 0
    printed = capsys.readouterr().out
    assert f"Screenshot: {out}" in printed and "slice 21/24" in printed and "lung window" in printed
    pixels = _png(out)
    assert pixels.shape == (860, 1280, 3)
    assert (pixels.min(axis=2) > 250).sum() > 500      # the white 1500 HU marker is on slice 20


def test_screenshot_of_another_slice_and_window_differs(qapp, leak_guard, scan_folders, tmp_path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main([str(scan_folders["one"]), "--screenshot", str(a), "--slice", "2", "--window", "mediastinum"]) == 0
    assert main([str(scan_folders["one"]), "--screenshot", str(b), "--slice", "2", "--window", "bone"]) == 0
    assert not np.array_equal(_png(a), _png(b))


def test_bad_path_and_bad_slice_exit_2_with_a_message(qapp, leak_guard, scan_folders, tmp_path, capsys) -> None:
    assert main([str(tmp_path / "nope"), "--screenshot", str(tmp_path / "x.png")]) == 2
    assert "cannot open" in capsys.readouterr().err
    assert main([str(scan_folders["one"]), "--screenshot", str(tmp_path / "x.png"), "--slice", "99"]) == 2
    assert "outside 0..23" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit):
        main(["--demo", str(scan_folders["one"])])


def _headless_env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["LUNGLENS_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.mark.parametrize("display, reason", [
    (None, "no display available"),
    (":187", "could not open a window on display ':187'"),     # announced, but no X server there
])
def test_no_display_falls_back_to_a_screenshot_and_exits_0(scan_folders, tmp_path, display, reason) -> None:
    """A fresh machine without a (usable) display: no Qt platform crash, a PNG in the cache, exit status 0.

    Run as a real process so the exit status also proves no PySide6/pyqtgraph abort at interpreter exit (134).
    """
    env = _headless_env(tmp_path)
    if display:
        env["DISPLAY"] = display
    result = subprocess.run([sys.executable, "-m", "viewer.app", str(scan_folders["one"])],
                            env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    shot = tmp_path / "cache" / "screenshots" / "one.png"
    assert shot.is_file() and reason in result.stdout and str(shot) in result.stdout
    assert "propagateSizeHints" not in result.stderr
    assert "Chest one: 160×120, 24 slices" in result.stdout


@pytest.mark.slow
def test_make_run_on_a_display_less_machine_renders_the_demo(tmp_path) -> None:
    """What ``make run`` does on a fresh headless machine: ``lunglens --demo`` -> demo generated, PNG, exit 0."""
    result = subprocess.run([sys.executable, "-m", "viewer.app", "--demo"], env=_headless_env(tmp_path),
                            capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    shot = tmp_path / "cache" / "screenshots" / "demo.png"
    assert shot.is_file() and str(shot) in result.stdout
    assert _png(shot).std() > 10
