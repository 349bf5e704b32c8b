"""The main window's Tools menu: Batch screen… (issue 6) and Benchmark… (issue 8).

``ToolsActions(window)`` adds the menu (before Help) and owns the two windows, created on first use and kept
(closing one hides it; a running batch or benchmark goes on, the status bar shows it).  ``shutdown()`` -- called
when the main window closes -- cancels their jobs, waits for them and deletes the windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence

if TYPE_CHECKING:  # pragma: no cover
    from viewer.qt.batch_dialog import BatchDialog
    from viewer.qt.bench_panel import BenchPanel
    from viewer.qt.main_window import MainWindow


class ToolsActions(QObject):
    def __init__(self, window: MainWindow):
        super().__init__(window)
        self.window = window
        self.batch_dialog: BatchDialog | None = None
        self.bench_panel: BenchPanel | None = None
        bar = window.menuBar()
        self.menu = bar.addMenu("&Tools")
        help_action = next((a for a in bar.actions() if a.text().replace("&", "") == "Help"), None)
        if help_action is not None:          # keep Help last
            bar.removeAction(self.menu.menuAction())
            bar.insertMenu(help_action, self.menu)
        self.batch_action = QAction("&Batch screen…", window)
        self.batch_action.setShortcut(QKeySequence("Ctrl+B"))
        self.batch_action.setToolTip("Screen every scan under some folders with one model: results table, "
                                     "CSV and PDF report (Ctrl+B)")
        self.batch_action.triggered.connect(self.open_batch)
        self.bench_action = QAction("Bench&mark…", window)
        self.bench_action.setToolTip("Efficiency benchmark of the registered networks: parameters, MACs, CPU "
                                     "latency, fraction of this machine's GEMM peak, the papers' figures")
        self.bench_action.triggered.connect(self.open_bench)
        for action in (self.batch_action, self.bench_action):
            window.addAction(action)
            self.menu.addAction(action)

    def open_batch(self) -> BatchDialog:
        if self.batch_dialog is None:
            from viewer.qt.batch_dialog import BatchDialog

            self.batch_dialog = BatchDialog(self.window)
        else:
            self.batch_dialog.refresh_models()
        self._present(self.batch_dialog)
        return self.batch_dialog

    def open_bench(self) -> BenchPanel:
        if self.bench_panel is None:
            from viewer.qt.bench_panel import BenchPanel

            self.bench_panel = BenchPanel(self.window)
        self._present(self.bench_panel)
        return self.bench_panel

    @staticmethod
    def _present(widget) -> None:
        widget.show()
        widget.raise_()
        widget.activateWindow()

    def shutdown(self) -> None:
        """Cancel and wait for the Tools jobs, delete the windows (the main window is closing)."""
        for name in ("batch_dialog", "bench_panel"):
            widget = getattr(self, name)
            if widget is not None:
                try:
                    widget.shutdown()
                except RuntimeError:         # already deleted
                    pass
                setattr(self, name, None)
