"""The Qt binding must not leak or drop references: PySide6 6.12.0 under Python 3.11 drops one reference to
``None`` on every call of a void method (``QWidget.move``, ``QLabel.setText`` ...), so a viewer aborts with
"Fatal Python error: none_dealloc" after some thousands of repaints (pyproject excludes that release)."""

from __future__ import annotations

import sys

import pytest


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12 on")
def test_void_qt_calls_keep_none_alive(qapp) -> None:
    from PySide6.QtWidgets import QLabel, QWidget

    parent = QWidget()
    label = QLabel(parent)
    try:
        before = sys.getrefcount(None)
        for i in range(500):
            label.move(i % 7, 3)
            label.setText("x")
        assert sys.getrefcount(None) - before > -50     # a few temporaries may come and go; 1000 lost is a leak
    finally:
        parent.deleteLater()
