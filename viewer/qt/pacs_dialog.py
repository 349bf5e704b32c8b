"""The PACS browser: configured servers, study search, series list, retrieve into the cache and open; send back.

* :class:`PacsBrowser` -- File ▸ Query/Retrieve from PACS… (Ctrl+Shift+P).  Server list (add / edit / remove,
  *Test* = C-ECHO or a QIDO ping), search by patient name / ID, study date (presets or a range), modality and
  accession number, a studies table, the series of the selected study, and *Retrieve* / *Retrieve && Open*
  with progress and Cancel.  Retrieved series land in the app cache (``engine.pacs``), never in a user folder,
  and open in the viewer like any scan.
* :class:`ServerDialog` -- one server entry (DIMSE: host, port, AE titles, C-GET or C-MOVE, TLS; DICOMweb: URL,
  TLS files, user + password environment variable), validated by ``engine.pacs.PacsServer``.
* :func:`send_secondary_capture` -- AI ▸ Send heatmap to PACS…: the heatmap Secondary Capture of the AI
  export (``viewer.model.export.heatmap_capture``, the same object "Export heatmap as DICOM" writes) pushed by
  C-STORE / STOW-RS to a configured server, which files it inside the source study.

Network work runs in :class:`~viewer.workers.Worker` jobs (:mod:`viewer.workers.pacs_jobs`); DIMSE progress comes
from pynetdicom's thread and reaches the GUI through the worker's queued, throttled progress signal.  Searches
and series look-ups belong to the dialog (cancelled when it closes); a retrieve started from a main window runs
as a window job (status bar progress and Cancel), so closing the dialog does not stop it.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView, QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
    QGridLayout, QGroupBox, QHBoxLayout, QHeaderView, QInputDialog, QLabel, QLineEdit, QMessageBox, QProgressBar,
    QPushButton, QSpinBox, QSplitter, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget,
)

from engine.pacs import PacsServer, RetrievedSeries, SendResult, SeriesResult, StudyResult, load_servers, \
    save_servers, servers_path
from engine.pacs.config import DEFAULT_CALLING_AE
from engine.pacs.errors import PacsConfigError, PacsError
from viewer.model.pacs_browser import MODALITIES, SERIES_COLUMNS, STUDY_COLUMNS, build_query, series_row, \
    server_summary, study_row
from viewer.workers.pacs_jobs import echo_job, find_series_job, find_studies_job, retrieve_job, send_job
from viewer.workers.worker import ProgressReport, Worker

if TYPE_CHECKING:  # pragma: no cover
    from viewer.qt.main_window import MainWindow

DATE_PRESETS = ("Any date", "Today", "Yesterday", "Last 7 days", "Last 30 days", "Last 12 months", "Range")
_ERROR_STYLE = "color: #d04040;"
_OK_STYLE = "color: #2f9a3a;"


def date_preset_range(name: str, today: _dt.date | None = None) -> tuple[str, str] | None:
    """(from, to) as YYYY-MM-DD for a date preset; None for "Range" (the fields stay as typed)."""
    today = today or _dt.date.today()
    days = {"Today": 0, "Yesterday": 1, "Last 7 days": 6, "Last 30 days": 29, "Last 12 months": 364}
    if name == "Any date":
        return "", ""
    if name == "Yesterday":
        day = (today - _dt.timedelta(days=1)).isoformat()
        return day, day
    if name in days:
        return (today - _dt.timedelta(days=days[name])).isoformat(), today.isoformat()
    return None


# ------------------------------------------------------------------------------------------ server dialog
class ServerDialog(QDialog):
    """Add or edit one PACS server; ``server()`` is the validated entry after ``accept``."""

    def __init__(self, parent: QWidget | None = None, server: PacsServer | None = None,
                 taken_names: Sequence[str] = ()):
        super().__init__(parent)
        self.setWindowTitle("Edit PACS server" if server else "Add PACS server")
        self.setObjectName("pacsServerDialog")
        self._taken = {n for n in taken_names if server is None or n != server.name}
        self._result: PacsServer | None = None
        s = server or PacsServer(name="PACS")

        self.name = QLineEdit(s.name if server else "")
        self.name.setPlaceholderText("e.g. Hospital PACS")
        self.protocol = QComboBox()
        self.protocol.addItem("DICOM (DIMSE: C-FIND, C-GET/C-MOVE, C-STORE)", "dimse")
        self.protocol.addItem("DICOMweb (QIDO-RS, WADO-RS, STOW-RS)", "dicomweb")
        self.protocol.setCurrentIndex(0 if s.protocol == "dimse" else 1)
        self.host = QLineEdit(s.host)
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(s.port)
        self.called_ae = QLineEdit(s.called_ae)
        self.called_ae.setMaxLength(16)
        self.calling_ae = QLineEdit(s.calling_ae or DEFAULT_CALLING_AE)
        self.calling_ae.setMaxLength(16)
        self.retrieve = QComboBox()
        self.retrieve.addItem("C-GET (no set-up on the PACS)", "get")
        self.retrieve.addItem("C-MOVE (the PACS must know our AE title, host and port)", "move")
        self.retrieve.setCurrentIndex(0 if s.retrieve == "get" else 1)
        self.move_port = QSpinBox()
        self.move_port.setRange(1, 65535)
        self.move_port.setValue(s.move_port)
        self.url = QLineEdit(s.url)
        self.url.setPlaceholderText("http://pacs.example.org:8042/dicom-web")
        self.tls = QCheckBox("Use TLS (DICOM over TLS; for DICOMweb use an https:// URL)")
        self.tls.setChecked(s.tls)
        self.tls_ca = _file_field(self, s.tls_ca_file, "CA certificates (empty: system store)")
        self.tls_cert = _file_field(self, s.tls_cert_file, "client certificate (optional)")
        self.tls_key = _file_field(self, s.tls_key_file, "client key (optional)")
        self.tls_verify = QCheckBox("Verify the server certificate (turn off for testing only)")
        self.tls_verify.setChecked(s.tls_verify)
        self.username = QLineEdit(s.username)
        self.password_env = QLineEdit(s.password_env)
        self.password_env.setPlaceholderText("name of an environment variable (passwords are never stored)")
        self.timeout = QDoubleSpinBox()
        self.timeout.setRange(1.0, 3600.0)
        self.timeout.setSuffix(" s")
        self.timeout.setValue(float(s.timeout_s))

        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Protocol", self.protocol)
        self._dimse_rows = [("Host", self.host), ("Port", self.port), ("PACS AE title", self.called_ae),
                            ("Our AE title", self.calling_ae), ("Retrieve with", self.retrieve),
                            ("Our C-MOVE port", self.move_port)]
        self._web_rows = [("URL", self.url), ("User", self.username), ("Password from", self.password_env)]
        for label, widget in self._dimse_rows + self._web_rows:
            form.addRow(label, widget)
        form.addRow("", self.tls)
        form.addRow("TLS CA file", self.tls_ca)
        form.addRow("Client certificate", self.tls_cert)
        form.addRow("Client key", self.tls_key)
        form.addRow("", self.tls_verify)
        form.addRow("Timeout", self.timeout)
        self.form = form
        self.error_label = QLabel()
        self.error_label.setObjectName("serverError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(_ERROR_STYLE)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)
        self.protocol.currentIndexChanged.connect(self._update_rows)
        self.retrieve.currentIndexChanged.connect(self._update_rows)
        self._update_rows()

    def _update_rows(self) -> None:
        dimse = self.protocol.currentData() == "dimse"
        for _label, widget in self._dimse_rows:
            self.form.setRowVisible(widget, dimse)
        for _label, widget in self._web_rows:
            self.form.setRowVisible(widget, not dimse)
        self.form.setRowVisible(self.move_port, dimse and self.retrieve.currentData() == "move")

    def build(self) -> PacsServer:
        """The entry as typed; :class:`PacsConfigError` naming the wrong field."""
        name = self.name.text().strip()
        if not name:
            raise PacsConfigError("give the server a name (it is how you pick it later)")
        if name in self._taken:
            raise PacsConfigError(f"a server named {name!r} exists already; choose another name")
        dimse = self.protocol.currentData() == "dimse"
        return PacsServer(
            name=name, protocol="dimse" if dimse else "dicomweb", host=self.host.text().strip(),
            port=self.port.value(), called_ae=self.called_ae.text(), calling_ae=self.calling_ae.text(),
            url=self.url.text().strip(), retrieve=self.retrieve.currentData(), move_port=self.move_port.value(),
            tls=self.tls.isChecked() and dimse, tls_ca_file=self.tls_ca.text().strip(),
            tls_cert_file=self.tls_cert.text().strip(), tls_key_file=self.tls_key.text().strip(),
            tls_verify=self.tls_verify.isChecked(), username=self.username.text().strip(),
            password_env=self.password_env.text().strip(), timeout_s=float(self.timeout.value()))

    def accept(self) -> None:
        try:
            self._result = self.build()
        except PacsConfigError as exc:
            self.error_label.setText(str(exc))
            return
        super().accept()

    def server(self) -> PacsServer | None:
        return self._result


def _file_field(parent: QWidget, value: str, placeholder: str) -> QLineEdit:
    edit = QLineEdit(value, parent)
    edit.setPlaceholderText(placeholder)
    browse = edit.addAction(parent.style().standardIcon(parent.style().StandardPixmap.SP_DirOpenIcon),
                            QLineEdit.ActionPosition.TrailingPosition)
    browse.setToolTip("Choose a file…")
    browse.triggered.connect(lambda: _browse_into(parent, edit))
    return edit


def _browse_into(parent: QWidget, edit: QLineEdit) -> None:
    path, _ = QFileDialog.getOpenFileName(parent, "Choose a file", edit.text() or str(Path.home()))
    if path:
        edit.setText(path)


# ------------------------------------------------------------------------------------------ the browser
class PacsBrowser(QDialog):
    """Search a PACS, retrieve a series into the cache, open it.  Signals: ``series_retrieved(RetrievedSeries)``.

    ``window``: the main window (retrieves then run as window jobs and the series opens there); without one the
    dialog runs and owns every job itself.  ``servers_file``: the server list (default: the user's).
    """

    series_retrieved = Signal(object)

    def __init__(self, window: MainWindow | None = None, *, servers_file: str | Path | None = None,
                 cache_dir: str | Path | None = None, parent: QWidget | None = None):
        super().__init__(parent if parent is not None else window)
        self.main_window = window
        self.servers_file = Path(servers_file) if servers_file is not None else servers_path()
        self.cache_dir = cache_dir
        self.setObjectName("pacsBrowser")
        self.setWindowTitle("PACS — query / retrieve")
        self.setWindowFlag(Qt.WindowType.WindowMaximizeButtonHint, True)
        self.resize(980, 640)
        self.servers: list[PacsServer] = []
        self.studies: list[StudyResult] = []
        self.series: list[SeriesResult] = []
        self.last_error = ""
        self.last_retrieved: RetrievedSeries | None = None
        self._config_error: str | None = None
        self._jobs: list[Worker] = []
        self._transfer: Worker | None = None
        self._series_job: Worker | None = None
        self._closed = False
        self._build()
        self.reload_servers()

    # --- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.server_combo = QComboBox()
        self.server_combo.setObjectName("serverCombo")
        self.server_combo.setMinimumWidth(220)
        self.server_info = QLabel()
        self.server_info.setObjectName("serverInfo")
        self.server_info.setStyleSheet("color: #777;")
        self.add_button = QPushButton("Add…")
        self.edit_button = QPushButton("Edit…")
        self.remove_button = QPushButton("Remove")
        self.test_button = QPushButton("Test")
        self.test_button.setToolTip("Check the server answers (DICOM C-ECHO, or a DICOMweb query)")
        servers = QHBoxLayout()
        servers.addWidget(QLabel("Server"))
        servers.addWidget(self.server_combo, 1)
        for button in (self.add_button, self.edit_button, self.remove_button, self.test_button):
            servers.addWidget(button)

        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("family name, starts with (DOE finds DOE^JANE); * and ? allowed")
        self.id_edit = QLineEdit()
        self.accession_edit = QLineEdit()
        self.date_preset = QComboBox()
        self.date_preset.addItems(DATE_PRESETS)
        self.date_from = QLineEdit()
        self.date_from.setPlaceholderText("YYYY-MM-DD")
        self.date_to = QLineEdit()
        self.date_to.setPlaceholderText("YYYY-MM-DD")
        self.modality_combo = QComboBox()
        for code in MODALITIES:
            self.modality_combo.addItem(code or "Any", code)
        self.modality_combo.setEditable(True)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        form = QGridLayout()
        form.addWidget(QLabel("Patient name"), 0, 0)
        form.addWidget(self.name_edit, 0, 1)
        form.addWidget(QLabel("Patient ID"), 0, 2)
        form.addWidget(self.id_edit, 0, 3)
        form.addWidget(QLabel("Accession"), 0, 4)
        form.addWidget(self.accession_edit, 0, 5)
        form.addWidget(QLabel("Study date"), 1, 0)
        dates = QHBoxLayout()
        dates.addWidget(self.date_preset)
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        form.addLayout(dates, 1, 1, 1, 3)
        form.addWidget(QLabel("Modality"), 1, 4)
        form.addWidget(self.modality_combo, 1, 5)
        form.addWidget(self.search_button, 0, 6, 2, 1)
        search_box = QGroupBox("Search")
        search_box.setLayout(form)

        self.studies_table = _table(STUDY_COLUMNS, "studiesTable", sort=(2, Qt.SortOrder.DescendingOrder))  # newest
        self.series_table = _table(SERIES_COLUMNS, "seriesTable", sort=(0, Qt.SortOrder.AscendingOrder))
        self.series_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.studies_table)
        splitter.addWidget(self.series_table)
        splitter.setSizes([360, 200])

        self.progress = QProgressBar()
        self.progress.setObjectName("pacsProgress")
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status = QLabel()
        self.status.setObjectName("pacsStatus")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.retrieve_button = QPushButton("Retrieve")
        self.retrieve_button.setToolTip("Copy the selected series into LungLens's cache")
        self.open_button = QPushButton("Retrieve && Open")
        self.open_button.setToolTip("Copy the selected series into the cache and open it in the viewer")
        self.close_button = QPushButton("Close")
        bottom = QHBoxLayout()
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.cancel_button)
        bottom.addStretch(0)
        bottom.addWidget(self.retrieve_button)
        bottom.addWidget(self.open_button)
        bottom.addWidget(self.close_button)

        layout = QVBoxLayout(self)
        layout.addLayout(servers)
        layout.addWidget(self.server_info)
        layout.addWidget(search_box)
        layout.addWidget(splitter, 1)
        layout.addWidget(self.status)
        layout.addLayout(bottom)

        self.server_combo.currentIndexChanged.connect(self._on_server_changed)
        self.add_button.clicked.connect(self.add_server_dialog)
        self.edit_button.clicked.connect(self.edit_server_dialog)
        self.remove_button.clicked.connect(self.remove_server_dialog)
        self.test_button.clicked.connect(self.test_server)
        self.search_button.clicked.connect(self.search)
        for edit in (self.name_edit, self.id_edit, self.accession_edit, self.date_from, self.date_to):
            edit.returnPressed.connect(self.search)
        self.date_preset.currentTextChanged.connect(self._on_date_preset)
        for edit in (self.date_from, self.date_to):
            edit.textEdited.connect(lambda _t: self.date_preset.setCurrentText("Range"))
        self.studies_table.itemSelectionChanged.connect(self._on_study_selected)
        self.series_table.itemSelectionChanged.connect(self._update_buttons)
        self.series_table.itemDoubleClicked.connect(lambda _item: self.retrieve(open_after=True))
        self.cancel_button.clicked.connect(self.cancel)
        self.retrieve_button.clicked.connect(lambda: self.retrieve(open_after=False))
        self.open_button.clicked.connect(lambda: self.retrieve(open_after=True))
        self.close_button.clicked.connect(self.close)

    # --- servers --------------------------------------------------------------------------------------
    def reload_servers(self) -> None:
        try:
            self.servers = load_servers(self.servers_file)
            self._config_error = None
        except PacsConfigError as exc:
            self.servers = []
            self._config_error = str(exc)
            self._say(str(exc), error=True)
        self._fill_server_combo()

    def _fill_server_combo(self, select: str | None = None) -> None:
        current = select or (self.current_server().name if self.current_server() else None)
        self.server_combo.blockSignals(True)
        self.server_combo.clear()
        for server in self.servers:
            self.server_combo.addItem(server.name, server.name)
        if not self.servers:
            self.server_combo.addItem("(no server configured: Add… one)", None)
        index = self.server_combo.findData(current) if current else -1
        self.server_combo.setCurrentIndex(max(0, index))
        self.server_combo.blockSignals(False)
        self._on_server_changed()

    def current_server(self) -> PacsServer | None:
        name = self.server_combo.currentData() if hasattr(self, "server_combo") else None
        return next((s for s in self.servers if s.name == name), None)

    def select_server(self, name: str) -> None:
        index = self.server_combo.findData(name)
        if index < 0:
            raise KeyError(f"no PACS server named {name!r}")
        self.server_combo.setCurrentIndex(index)

    def _on_server_changed(self, _index: int = 0) -> None:
        server = self.current_server()
        self.server_info.setText(server_summary(server) if server else
                                 f"Servers are kept in {self.servers_file}")
        self.studies, self.series = [], []
        _fill(self.studies_table, [])
        _fill(self.series_table, [])
        self._update_buttons()

    def _save(self, servers: list[PacsServer]) -> bool:
        if self._config_error:
            self._say(f"{self._config_error} (not saving over it)", error=True)
            return False
        try:
            save_servers(servers, self.servers_file)
        except (PacsConfigError, OSError) as exc:
            self._say(f"cannot save the server list {self.servers_file}: {exc}", error=True)
            return False
        self.servers = servers
        return True

    def add_server(self, server: PacsServer) -> None:
        """Add (or replace, by name) ``server`` and save the list."""
        servers = [s for s in self.servers if s.name != server.name] + [server]
        if self._save(servers):
            self._fill_server_combo(select=server.name)
            self._say(f"Saved server {server.name}.")

    def replace_server(self, old_name: str, server: PacsServer) -> None:
        servers = [server if s.name == old_name else s for s in self.servers]
        if self._save(servers):
            self._fill_server_combo(select=server.name)
            self._say(f"Saved server {server.name}.")

    def remove_server(self, name: str) -> None:
        if self._save([s for s in self.servers if s.name != name]):
            self._fill_server_combo()
            self._say(f"Removed server {name}.")

    def add_server_dialog(self) -> ServerDialog:
        dialog = ServerDialog(self, None, [s.name for s in self.servers])
        dialog.accepted.connect(lambda: self.add_server(dialog.server()))
        dialog.open()
        return dialog

    def edit_server_dialog(self) -> ServerDialog | None:
        server = self.current_server()
        if server is None:
            return None
        dialog = ServerDialog(self, server, [s.name for s in self.servers])
        dialog.accepted.connect(lambda: self.replace_server(server.name, dialog.server()))
        dialog.open()
        return dialog

    def remove_server_dialog(self) -> None:
        server = self.current_server()
        if server is None:
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Remove PACS server",
                          f"Remove {server.name} from the list? (Nothing on the server changes.)",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.accepted.connect(lambda: self.remove_server(server.name))
        box.open()

    # --- jobs -----------------------------------------------------------------------------------------
    def _start(self, worker: Worker, message: str, *, transfer: bool = False) -> Worker:
        self._jobs.append(worker)            # until its ``finished`` arrives here (after result/error/cancelled)
        worker.error.connect(self._on_error)
        if transfer:
            self._transfer = worker
            worker.progress.connect(self._on_progress)
            worker.cancelled.connect(lambda: self._say("Cancelled; nothing was kept in the cache."))
            self.progress.setRange(0, 0)
            self.progress.setFormat(message)
            self.progress.show()
        worker.finished.connect(lambda w=worker: self._on_finished(w))
        self._say(message)
        worker.start()
        self._update_buttons()
        return worker

    def _on_progress(self, report: ProgressReport) -> None:
        if self._closed:
            return
        if report.fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * report.fraction))
        eta = f" · {report.eta:.0f} s left" if report.eta is not None and report.eta >= 1 else ""
        self.progress.setFormat(f"{report.message}{eta}")

    def _on_finished(self, worker: Worker) -> None:
        self._jobs = [w for w in self._jobs if w is not worker]
        if self._closed:
            return
        if worker is self._transfer:
            self._transfer = None
            self.progress.hide()
        self._update_buttons()

    def _on_error(self, exc: BaseException, _details: str = "") -> None:
        if self._closed:
            return
        self._say(_error_text(exc), error=True)

    @property
    def busy(self) -> bool:
        """A job runs or its results have not reached the dialog yet."""
        return bool(self._jobs)

    def cancel(self) -> None:
        """Cancel the running retrieve (or search)."""
        for worker in list(self._jobs):
            worker.cancel()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Process events until no job of the dialog runs (tests, scripts)."""
        from PySide6.QtWidgets import QApplication
        deadline = time.monotonic() + timeout
        app = QApplication.instance()
        while self.busy or (self._transfer is not None):
            if time.monotonic() > deadline:
                return False
            app.processEvents()
            time.sleep(0.005)
        app.processEvents()
        return True

    # --- actions --------------------------------------------------------------------------------------
    def test_server(self) -> Worker | None:
        server = self._require_server()
        if server is None:
            return None
        worker = Worker(echo_job, server, name="pacs-echo")
        worker.result.connect(lambda seconds, s=server: self._say(
            f"✓ {s.name} answered in {1000 * seconds:.0f} ms ({server_summary(s)}).", ok=True))
        return self._start(worker, f"Testing {server.name} …")

    def query(self):
        """The search form as a :class:`StudyQuery` (``PacsConfigError`` for a bad field)."""
        modality = self.modality_combo.currentText().strip()
        return build_query(patient_name=self.name_edit.text(), patient_id=self.id_edit.text(),
                           date_from=self.date_from.text(), date_to=self.date_to.text(),
                           modality="" if modality.lower() == "any" else modality,
                           accession_number=self.accession_edit.text())

    def search(self) -> Worker | None:
        server = self._require_server()
        if server is None:
            return None
        try:
            query = self.query()
        except PacsConfigError as exc:
            self._say(str(exc), error=True)
            return None
        for worker in self._jobs:             # the newest search wins
            if worker.name in ("pacs-search", "pacs-series"):
                worker.cancel()
        worker = Worker(find_studies_job, server, query, name="pacs-search")
        worker.result.connect(self._on_studies)
        return self._start(worker, f"Searching {server.name} …")

    def _on_studies(self, studies: list[StudyResult]) -> None:
        if self._closed:
            return
        self.studies = list(studies)
        _fill(self.studies_table, [(study_row(s), s) for s in self.studies])
        self.series = []
        _fill(self.series_table, [])
        n = len(self.studies)
        self._say(f"{n} stud{'y' if n == 1 else 'ies'} found." if n else "No study matches.")
        if n:
            self.studies_table.selectRow(0)

    def selected_study(self) -> StudyResult | None:
        return _selected(self.studies_table)

    def selected_series(self) -> SeriesResult | None:
        return _selected(self.series_table)

    def select_study(self, study_uid: str) -> None:
        _select(self.studies_table, lambda s: s.study_uid == study_uid)

    def select_series(self, series_uid: str) -> None:
        _select(self.series_table, lambda s: s.series_uid == series_uid)

    def _on_study_selected(self) -> None:
        study = self.selected_study()
        self.series = []
        _fill(self.series_table, [])
        self._update_buttons()
        server = self.current_server()
        if study is None or server is None:
            return
        if self._series_job is not None:
            self._series_job.cancel()
        worker = Worker(find_series_job, server, study.study_uid, name="pacs-series")
        worker.result.connect(lambda series, uid=study.study_uid: self._on_series(uid, series))
        self._series_job = worker
        self._start(worker, f"Listing the series of {study_row(study)[0] or study.study_uid} …")

    def _on_series(self, study_uid: str, series: list[SeriesResult]) -> None:
        study = self.selected_study()
        if self._closed or study is None or study.study_uid != study_uid:
            return
        self.series = list(series)
        _fill(self.series_table, [(series_row(s), s) for s in self.series])
        if self.series:      # preselect the largest CT-like series, as opening a folder does
            best = max(self.series, key=lambda s: (s.modality == "CT", s.n_instances or 0))
            self.select_series(best.series_uid)
        self._say(f"{len(self.series)} series in this study.")

    def retrieve(self, open_after: bool = True, *, refresh: bool = False) -> Worker | None:
        """Retrieve the selected series into the cache (then open it in the window when ``open_after``)."""
        server, series = self._require_server(), self.selected_series()
        if server is None:
            return None
        if series is None:
            self._say("Select a series to retrieve.", error=True)
            return None
        if self._transfer is not None:
            self._say("A retrieve is running; cancel it or wait.", error=True)
            return None
        label = series.series_description or f"series {series.series_number or ''}".strip()
        worker = Worker(retrieve_job, server, series.study_uid, series.series_uid, refresh=refresh,
                        cache_dir=self.cache_dir, name="pacs-retrieve")
        worker.result.connect(self._on_retrieved)
        window = self.main_window
        if window is not None:
            if open_after:
                # connected to the window, not the dialog: it opens even if the dialog was closed meanwhile
                worker.result.connect(lambda got, w=window: w.open_path(got.folder))
            self._jobs.append(worker)
            self._transfer = worker
            worker.progress.connect(self._on_progress)
            worker.cancelled.connect(lambda: None if self._closed else
                                     self._say("Cancelled; nothing was kept in the cache."))
            worker.finished.connect(lambda w=worker: self._on_finished(w))
            self.progress.setRange(0, 0)
            self.progress.show()
            self._say(f"Retrieving {label} from {server.name} …")
            window.run_job(worker, f"Retrieving {label} from {server.name} …",
                           on_error=lambda exc, text: self._on_transfer_error(exc, text))
            self._update_buttons()
            return worker
        return self._start(worker, f"Retrieving {label} from {server.name} …", transfer=True)

    def _on_transfer_error(self, exc: BaseException, details: str) -> None:
        if self._closed or not self.isVisible():
            if self.main_window is not None:
                show_pacs_error(self.main_window, "Retrieve failed", exc, details)
            return
        self._on_error(exc, details)

    def _on_retrieved(self, got: RetrievedSeries) -> None:
        self.last_retrieved = got
        self.series_retrieved.emit(got)
        if self._closed:
            return
        size = f", {got.bytes_total / 1e6:.1f} MB" if got.bytes_total else ""
        where = "already in the cache" if got.from_cache else "retrieved into the cache"
        self._say(f"{got.n_instances} images {where}{size}: {got.folder}", ok=True)

    # --- helpers --------------------------------------------------------------------------------------
    def _require_server(self) -> PacsServer | None:
        server = self.current_server()
        if server is None:
            self._say("Add a PACS server first (Add…).", error=True)
        return server

    def _on_date_preset(self, name: str) -> None:
        dates = date_preset_range(name)
        if dates is not None:
            for edit, value in zip((self.date_from, self.date_to), dates):
                edit.setText(value)

    def _update_buttons(self) -> None:
        has_server = self.current_server() is not None
        transferring = self._transfer is not None
        for button in (self.edit_button, self.remove_button, self.test_button, self.search_button):
            button.setEnabled(has_server)
        can_retrieve = has_server and self.selected_series() is not None and not transferring
        self.retrieve_button.setEnabled(can_retrieve)
        self.open_button.setEnabled(can_retrieve and self.main_window is not None)
        self.cancel_button.setEnabled(self.busy)

    def _say(self, text: str, *, error: bool = False, ok: bool = False) -> None:
        if error:
            self.last_error = text
        self.status.setStyleSheet(_ERROR_STYLE if error else _OK_STYLE if ok else "")
        self.status.setText(text)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Cancel the dialog's own jobs and wait for them (a retrieve run by the window carries on)."""
        self._closed = True
        owned = [w for w in self._jobs if not (self.main_window is not None and w is self._transfer)]
        for worker in owned:
            worker.cancel()
        deadline = time.monotonic() + timeout
        for worker in owned:
            worker.wait(max(0.0, deadline - time.monotonic()))

    def closeEvent(self, event) -> None:  # noqa: N802
        self.shutdown()
        super().closeEvent(event)

    def reject(self) -> None:      # Esc closes like the Close button (and cancels searches)
        self.close()


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, PacsError):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}"


def show_pacs_error(parent: QWidget, title: str, exc: BaseException, details: str = "") -> QMessageBox:
    """A non-blocking message box with the PACS error's own message (what happened, which server, what to do)."""
    box = QMessageBox(parent)
    box.setObjectName("pacsErrorDialog")
    box.setIcon(QMessageBox.Icon.Warning if isinstance(exc, PacsError) else QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(_error_text(exc))
    if details and not isinstance(exc, PacsError):
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()
    return box


def _table(columns: Sequence[str], name: str, sort: tuple[int, Qt.SortOrder]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(list(columns))
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.setAlternatingRowColors(True)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.setSortingEnabled(True)
    table.sortByColumn(*sort)
    return table


def _fill(table: QTableWidget, rows: list[tuple[tuple[str, ...], Any]]) -> None:
    table.setSortingEnabled(False)
    table.clearContents()
    table.setRowCount(len(rows))
    for r, (texts, payload) in enumerate(rows):
        for c, text in enumerate(texts):
            item = QTableWidgetItem(text)
            if text.isdigit():
                item.setData(Qt.ItemDataRole.DisplayRole, int(text))   # numbers sort as numbers
            if c == 0:
                item.setData(Qt.ItemDataRole.UserRole, payload)
            table.setItem(r, c, item)
    table.setSortingEnabled(True)


def _selected(table: QTableWidget):
    rows = table.selectionModel().selectedRows() if table.selectionModel() else []
    if not rows:
        return None
    item = table.item(rows[0].row(), 0)
    return item.data(Qt.ItemDataRole.UserRole) if item is not None else None


def _select(table: QTableWidget, match: Callable[[Any], bool]) -> None:
    for row in range(table.rowCount()):
        item = table.item(row, 0)
        if item is not None and match(item.data(Qt.ItemDataRole.UserRole)):
            table.selectRow(row)
            return
    raise KeyError("no such row in the table")


# ------------------------------------------------------------------------------------------ send back
def send_secondary_capture(window: MainWindow, server: PacsServer, slices: Sequence[int] | None = None, *,
                           on_done: Callable[[SendResult], None] | None = None) -> Worker:
    """Push the heatmap on screen as a DICOM Secondary Capture (the AI export's object) to ``server``.

    ``slices``: axial slices to include (default: the slice on screen; several make one multi-frame capture).
    Raises ``viewer.model.export.ExportRefused`` when there is nothing to send (no heatmap, a non-DICOM scan, a
    slice not computed); the capture is built and sent in a window job (progress, Cancel, error dialog).
    """
    from viewer.model.export import ExportRefused, dicom_sources, heatmap_capture

    state = window.state
    volume, layer = state.volume, state.active_heatmap
    if volume is None or layer is None:
        raise ExportRefused("show a heatmap first (AI ▸ Screen, then H), then send it")
    slices = [int(z) for z in (slices if slices is not None else [state.slice_index])]
    dicom_sources(volume, slices)                       # refuse non-DICOM scans now, with the reason
    missing = [z for z in slices if not layer.has_slice(z)]
    if missing:
        raise ExportRefused(f"the heatmap of slice {missing[0] + 1} has not been computed yet; show it first")
    session = getattr(getattr(window, "ai", None), "session", None)
    result = getattr(session, "result", None)
    score = float(result.probability) if result is not None else None
    window_level = state.window

    def job(context, srv=server):
        context.progress(None, None, "Building the Secondary Capture …")
        capture = heatmap_capture(volume, layer, window_level, slices, score=score)
        context.check()
        return send_job(context, srv, [capture])

    worker = Worker(job, name="pacs-send")

    def done(sent: SendResult) -> None:
        warn = f" ({len(sent.warnings)} warning(s): {next(iter(sent.warnings.values()))})" if sent.warnings else ""
        window.statusBar().showMessage(
            f"Sent the heatmap ({len(slices)} slice{'s' if len(slices) != 1 else ''}) to {server.name}: "
            f"{len(sent.stored)} object stored{warn}", 10000)
        if on_done is not None:
            on_done(sent)

    worker.result.connect(done)
    return window.run_job(worker, f"Sending the heatmap to {server.name} …",
                          on_error=lambda exc, text: show_pacs_error(window, "Send to PACS failed", exc, text))


class PacsActions(QObject):
    """The PACS entries of the main window: File ▸ Query/Retrieve from PACS…, AI ▸ Send heatmap to PACS…."""

    def __init__(self, window: MainWindow, *, servers_file: str | Path | None = None):
        super().__init__(window)
        self.window = window
        self.servers_file = servers_file
        self.browser: PacsBrowser | None = None
        self.browse_action = QAction("Query/&Retrieve from PACS…", window)
        self.browse_action.setShortcut(QKeySequence("Ctrl+Shift+P"))
        self.browse_action.setToolTip("Search a PACS and open a series from it (Ctrl+Shift+P)")
        self.browse_action.triggered.connect(self.open_browser)
        window.addAction(self.browse_action)
        file_menu = _menu(window, "File")
        if file_menu is not None:
            before = next((a for a in file_menu.actions() if a.isSeparator()), None)
            file_menu.insertAction(before, self.browse_action) if before else file_menu.addAction(self.browse_action)
        self.send_action = QAction("Send heatmap to &PACS…", window)
        self.send_action.setToolTip("Send the heatmap on screen as a DICOM Secondary Capture to a PACS")
        self.send_action.triggered.connect(self.send_dialog)
        window.addAction(self.send_action)
        ai_menu = getattr(getattr(window, "ai", None), "menu", None) or _menu(window, "AI")
        anchor = getattr(getattr(window, "ai", None), "export_dicom_action", None)
        if ai_menu is not None:
            actions = ai_menu.actions()
            after = actions[actions.index(anchor) + 1] if anchor in actions and actions.index(anchor) + 1 < \
                len(actions) else None
            ai_menu.insertAction(after, self.send_action) if after else ai_menu.addAction(self.send_action)
        window.state.events.layers.connect(self._update)
        window.state.events.volume.connect(self._update)
        self._update(None)

    def _update(self, _event) -> None:
        self.send_action.setEnabled(self.window.state.active_heatmap is not None)

    def open_browser(self) -> PacsBrowser:
        if self.browser is None:
            self.browser = PacsBrowser(self.window, servers_file=self.servers_file)
            self.browser.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            self.browser.destroyed.connect(self._forget_browser)
        self.browser.show()
        self.browser.raise_()
        self.browser.activateWindow()
        return self.browser

    def _forget_browser(self, *_args) -> None:
        self.browser = None

    def send_dialog(self) -> Worker | None:
        from viewer.model.export import ExportRefused
        try:
            servers = load_servers(self.servers_file)
        except PacsConfigError as exc:
            show_pacs_error(self.window, "Send to PACS", exc)
            return None
        if not servers:
            QMessageBox.information(self.window, "Send to PACS", "No PACS server is configured yet: add one in "
                                    "File ▸ Query/Retrieve from PACS… (Add…), then send again.")
            return None
        server = servers[0]
        if len(servers) > 1:
            name, ok = QInputDialog.getItem(self.window, "Send to PACS", "Send the heatmap to:",
                                            [s.name for s in servers], 0, False)
            if not ok:
                return None
            server = next(s for s in servers if s.name == name)
        try:
            return send_secondary_capture(self.window, server)
        except ExportRefused as exc:
            show_pacs_error(self.window, "Send to PACS", PacsError(str(exc)))
            return None

    def shutdown(self) -> None:
        self.window.state.events.disconnect(self._update)
        if self.browser is not None:
            self.browser.close()


def _menu(window, title: str):
    for action in window.menuBar().actions():
        if action.text().replace("&", "") == title and action.menu() is not None:
            return action.menu()
    return None
