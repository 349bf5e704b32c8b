"""``ResultsTable``: the sortable table of a batch screening's results (one row per series).

Rows are the dicts of ``engine.screen.store.read_results`` (or the ``JobProgress.finished`` rows of a running
job, same keys).  Failed series are tinted red with their reason in the last column; flagged scans (probability
at or above the job's threshold) are marked.  Sorting is numeric where it should be (probability, slices); a
failed row has no probability and sorts below every screened one.  Double-click (or Enter) emits
``scan_activated(row)``: the dialog opens that scan in the viewer at its most suspicious slice.

``Top z`` is the z index as in ``report.pdf`` and ``results.csv`` (0 = first slice as LungLens loads it); the
viewer's slider shows it as slice z + 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt, \
    Signal
from PySide6.QtGui import QBrush, QColor, QFont, QKeyEvent
from PySide6.QtWidgets import QAbstractItemView, QComboBox, QHBoxLayout, QHeaderView, QLabel, QTableView, \
    QVBoxLayout, QWidget

SORT_ROLE = Qt.ItemDataRole.UserRole
ROW_ROLE = Qt.ItemDataRole.UserRole + 1

FAILED_BACKGROUND = QColor(255, 222, 222)
FAILED_FOREGROUND = QColor(150, 20, 20)
FLAGGED_BACKGROUND = QColor(255, 236, 200)

# (header, tooltip) per column
COLUMNS: tuple[tuple[str, str], ...] = (
    ("Scan", "Pseudonymous scan id (as in report.pdf and results.csv)"),
    ("Status", "ok: screened; failed: could not be screened (see Reason)"),
    ("P(positive)", "The model's scan-level probability of the positive class (research use, not a diagnosis)"),
    ("Flag", "Flagged: probability at or above the job's threshold"),
    ("Top z", "Most suspicious slices, most suspicious first (z index as in the report; the viewer shows z+1)"),
    ("Series", "Series description, kind and number of slices"),
    ("Path", "What opens on double-click: the series folder or file"),
    ("Reason", "Why a series failed (what, which file, what to do), or warnings"),
)
COL_SCAN, COL_STATUS, COL_PROB, COL_FLAG, COL_TOP, COL_SERIES, COL_PATH, COL_REASON = range(len(COLUMNS))

FILTERS = ("All series", "Flagged", "Failed", "Screened (ok)")


def _top_text(row: dict[str, Any], n: int = 3) -> str:
    top = row.get("top_slices")
    if isinstance(top, (list, tuple)) and top:
        return ", ".join(str(int(z)) for z in top[:n]) + (" …" if len(top) > n else "")
    z = row.get("top_slice")
    return "" if z is None else str(int(z))


def _series_text(row: dict[str, Any]) -> str:
    what = row.get("description") or (Path(row["path"]).name if row.get("path") else "")
    kind = row.get("kind") or ""
    n = row.get("n_slices")
    extra = ", ".join(x for x in (kind, f"{n} sl." if n else "") if x)
    return f"{what} ({extra})" if extra else str(what)


def _reason_text(row: dict[str, Any]) -> str:
    if row.get("status") == "failed":
        return str(row.get("reason") or "failed (no reason recorded)")
    warnings = row.get("warnings")
    if isinstance(warnings, (list, tuple)) and warnings:
        return "warning: " + "; ".join(str(w) for w in warnings)
    return ""


class ResultsModel(QAbstractTableModel):
    """The rows, keyed by ``series_key`` (a row committed again -- e.g. a retried failure -- replaces the old)."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self._rows: list[dict[str, Any]] = []
        self._index: dict[str, int] = {}

    # --- content ------------------------------------------------------------------------------------------
    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.beginResetModel()
        self._rows = [dict(r) for r in rows]
        self._index = {self._key(r, i): i for i, r in enumerate(self._rows)}
        self.endResetModel()

    def upsert(self, rows: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> None:
        for row in rows:
            key = self._key(row, len(self._rows))
            at = self._index.get(key)
            if at is None:
                n = len(self._rows)
                self.beginInsertRows(QModelIndex(), n, n)
                self._rows.append(dict(row))
                self._index[key] = n
                self.endInsertRows()
            else:
                self._rows[at] = dict(row)
                self.dataChanged.emit(self.index(at, 0), self.index(at, len(COLUMNS) - 1))

    def clear(self) -> None:
        self.set_rows([])

    @staticmethod
    def _key(row: dict[str, Any], fallback: int) -> str:
        return str(row.get("series_key") or row.get("scan_id") or f"#{fallback}")

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def row_dict(self, row: int) -> dict[str, Any]:
        return self._rows[row]

    def counts(self) -> dict[str, int]:
        ok = sum(1 for r in self._rows if r.get("status") == "ok")
        failed = sum(1 for r in self._rows if r.get("status") == "failed")
        flagged = sum(1 for r in self._rows if r.get("status") == "ok" and r.get("flagged"))
        return {"total": len(self._rows), "ok": ok, "failed": failed, "flagged": flagged}

    # --- Qt model -----------------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section][1]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        col = index.column()
        failed = row.get("status") == "failed"
        flagged = not failed and bool(row.get("flagged"))
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == SORT_ROLE:
            return self._sort_key(row, col)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == COL_PATH:
                return row.get("path")
            if col == COL_REASON or (failed and col == COL_STATUS):
                return _reason_text(row) or None
            if col == COL_TOP and row.get("top_slice") is not None:
                return f"Double-click opens the scan at z = {row['top_slice']} (viewer slice {row['top_slice'] + 1})"
            return "Double-click to open this scan in the viewer" if row.get("path") else None
        if role == Qt.ItemDataRole.BackgroundRole:
            if failed:
                return QBrush(FAILED_BACKGROUND)
            if flagged and col in (COL_PROB, COL_FLAG):
                return QBrush(FLAGGED_BACKGROUND)
            return None
        if role == Qt.ItemDataRole.ForegroundRole:
            return QBrush(FAILED_FOREGROUND) if failed else None
        if role == Qt.ItemDataRole.FontRole:
            if (failed and col == COL_STATUS) or (flagged and col in (COL_PROB, COL_FLAG)):
                font = QFont()
                font.setBold(True)
                return font
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (COL_PROB, COL_TOP):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _display(row: dict[str, Any], col: int) -> str:
        if col == COL_SCAN:
            return str(row.get("scan_id") or "")
        if col == COL_STATUS:
            return str(row.get("status") or "")
        if col == COL_PROB:
            p = row.get("probability")
            return "" if p is None else f"{float(p):.3f}"
        if col == COL_FLAG:
            return "flagged" if row.get("status") == "ok" and row.get("flagged") else ""
        if col == COL_TOP:
            return _top_text(row)
        if col == COL_SERIES:
            return _series_text(row)
        if col == COL_PATH:
            return str(row.get("path") or "")
        if col == COL_REASON:
            return _reason_text(row).splitlines()[0] if _reason_text(row) else ""
        return ""

    @staticmethod
    def _sort_key(row: dict[str, Any], col: int) -> Any:
        if col == COL_PROB:
            p = row.get("probability")
            return -1.0 if p is None else float(p)        # failed rows below every screened one
        if col == COL_FLAG:
            return 1 if row.get("status") == "ok" and row.get("flagged") else 0
        if col == COL_TOP:
            z = row.get("top_slice")
            return -1 if z is None else int(z)
        if col == COL_STATUS:
            return 0 if row.get("status") == "failed" else 1
        return ResultsModel._display(row, col).lower()


class _Filter(QSortFilterProxyModel):
    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.mode = 0
        self.setSortRole(SORT_ROLE)

    def set_mode(self, mode: int) -> None:
        if hasattr(self, "beginFilterChange"):          # Qt >= 6.9 (invalidateFilter is deprecated there)
            self.beginFilterChange()
            self.mode = int(mode)
            self.endFilterChange()
        else:  # pragma: no cover - older Qt
            self.mode = int(mode)
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int,  # noqa: N802
                         source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        if self.mode == 0:
            return True
        row = self.sourceModel().row_dict(source_row)
        status = row.get("status")
        if self.mode == 1:
            return status == "ok" and bool(row.get("flagged"))
        if self.mode == 2:
            return status == "failed"
        return status == "ok"


class _TableView(QTableView):
    activated_row = Signal(QModelIndex)

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentIndex().isValid():
            self.activated_row.emit(self.currentIndex())
            return
        super().keyPressEvent(event)


class ResultsTable(QWidget):
    """Table + filter + counts; ``scan_activated(row dict)`` on double-click / Enter."""

    scan_activated = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model = ResultsModel(self)
        self.proxy = _Filter(self)
        self.proxy.setSourceModel(self.model)
        self.view = _TableView(self)
        self.view.setObjectName("batchResults")
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setAlternatingRowColors(False)
        self.view.setWordWrap(False)
        self.view.verticalHeader().setVisible(False)
        header = self.view.horizontalHeader()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, width in ((COL_SCAN, 96), (COL_STATUS, 56), (COL_PROB, 82), (COL_FLAG, 60), (COL_TOP, 104),
                           (COL_SERIES, 190), (COL_PATH, 220)):
            self.view.setColumnWidth(col, width)
        self.view.sortByColumn(COL_PROB, Qt.SortOrder.DescendingOrder)
        self.view.doubleClicked.connect(self._activate)
        self.view.activated_row.connect(self._activate)

        self.filter_box = QComboBox(self)
        self.filter_box.addItems(FILTERS)
        self.filter_box.setToolTip("Show all series, only flagged ones, or only failures")
        self.filter_box.currentIndexChanged.connect(self._on_filter)
        self.counts_label = QLabel(self)
        self.counts_label.setObjectName("batchCounts")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.counts_label, 1)
        top.addWidget(QLabel("Show:", self))
        top.addWidget(self.filter_box)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.view, 1)
        self.model.modelReset.connect(self._update_counts)
        self.model.rowsInserted.connect(self._update_counts)
        self.model.dataChanged.connect(self._update_counts)
        self._update_counts()

    # --- content ------------------------------------------------------------------------------------------
    def set_rows(self, rows: list[dict[str, Any]]) -> None:
        self.model.set_rows(rows)
        self._resort()

    def add_rows(self, rows: list[dict[str, Any]] | tuple[dict[str, Any], ...]) -> None:
        if rows:
            self.model.upsert(rows)
            self._resort()

    def clear(self) -> None:
        self.model.clear()

    def _resort(self) -> None:
        header = self.view.horizontalHeader()
        self.proxy.sort(header.sortIndicatorSection(), header.sortIndicatorOrder())

    # --- access (tests, the dialog) -----------------------------------------------------------------------
    def visible_rows(self) -> list[dict[str, Any]]:
        """Rows in the order shown (after sorting and filtering)."""
        return [self.proxy.index(i, 0).data(ROW_ROLE) for i in range(self.proxy.rowCount())]

    def view_index(self, scan_id: str, column: int = COL_SCAN) -> QModelIndex:
        """The view index of the row with ``scan_id`` (invalid if it is not shown)."""
        for i in range(self.proxy.rowCount()):
            if self.proxy.index(i, 0).data(ROW_ROLE).get("scan_id") == scan_id:
                return self.proxy.index(i, column)
        return QModelIndex()

    def _activate(self, index: QModelIndex) -> None:
        if not index.isValid():
            return
        row = index.data(ROW_ROLE)
        if row and row.get("path"):
            self.scan_activated.emit(row)

    def _on_filter(self, mode: int) -> None:
        self.proxy.set_mode(mode)

    def _update_counts(self, *_args: Any) -> None:
        c = self.model.counts()
        if not c["total"]:
            self.counts_label.setText("No results yet.")
            return
        parts = [f"{c['total']} series", f"{c['ok']} screened", f"{c['flagged']} flagged"]
        if c["failed"]:
            parts.append(f"<span style='color:#961414'><b>{c['failed']} failed</b></span>")
        self.counts_label.setText(" · ".join(parts) + " — double-click a row to open the scan at its top slice")
