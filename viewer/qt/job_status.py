"""``JobStatus``: the status-bar strip for the running job -- message, progress bar, ETA and Cancel."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from viewer.workers.worker import ProgressReport, Worker


class JobStatus(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.message = QLabel(self)
        self.bar = QProgressBar(self)
        self.bar.setObjectName("jobProgress")
        self.bar.setFixedWidth(180)
        self.bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("jobCancel")
        self.cancel_button.setToolTip("Stop the running job (Esc)")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button)
        self.cancel_button.clicked.connect(self.cancel)
        self._worker: Worker | None = None
        self.updates = 0      # progress reports shown (tests check the throttling)
        self.setVisible(False)

    @property
    def worker(self) -> Worker | None:
        return self._worker

    def track(self, worker: Worker, message: str) -> None:
        """Show ``worker``'s progress until it finishes (replaces the job shown before)."""
        self._worker = worker
        self.updates = 0
        self.message.setText(message)
        self.bar.setRange(0, 0)       # busy until the first report with a fraction
        self.cancel_button.setEnabled(True)
        self.setVisible(True)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(lambda w=worker: self._on_finished(w))

    def cancel(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self.cancel_button.setEnabled(False)
            self.message.setText("Cancelling …")

    def _on_progress(self, report: ProgressReport) -> None:
        if self._worker is None or self._worker.is_cancel_requested:
            return
        self.updates += 1
        if report.message:
            self.message.setText(report.message)
        if report.fraction is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 100)
            self.bar.setValue(report.percent or 0)
            eta = f" · {report.eta:.0f} s left" if report.eta is not None and report.eta >= 1 else ""
            self.bar.setFormat(f"%p%{eta}")

    def _on_finished(self, worker: Worker) -> None:
        if worker is self._worker:
            self._worker = None
            self.setVisible(False)
