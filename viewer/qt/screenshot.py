"""Render a window to a PNG without a person in front of it (``lunglens --screenshot``, tests, docs)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication, QWidget

SCREENSHOT_SIZE = (1280, 860)


def settle(rounds: int = 3) -> None:
    """Let Qt finish layouts, resizes and pending repaints."""
    app = QApplication.instance()
    for _ in range(rounds):
        app.processEvents()
        app.sendPostedEvents()


def render_png(widget: QWidget, out: str | Path, size: tuple[int, int] = SCREENSHOT_SIZE) -> Path:
    """Show ``widget`` at ``size`` (on whatever platform is active, e.g. offscreen), grab it, save a PNG."""
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    widget.resize(*size)
    widget.show()
    settle()
    image = widget.grab()
    if image.isNull() or not image.save(str(out), "PNG"):
        raise OSError(f"could not write the screenshot to {out} (is the folder writable?)")
    return out


def dispose(widget: QWidget) -> None:
    """Close and really delete a top-level widget now (pyqtgraph items must not outlive the interpreter)."""
    widget.close()
    widget.deleteLater()
    app = QApplication.instance()
    app.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    app.processEvents()
