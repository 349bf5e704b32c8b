"""``SeriesBrowser``: the series found under an opened folder; activating one loads it.

Volumes (DICOM series, NIfTI, NRRD/MHA) are listed first, largest first.  2-D PNG/JPEG slices are one-slice
"series" each, so a folder of them is grouped under one folder node instead of flooding the list.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from engine.io.volume import SeriesInfo

ROLE = Qt.ItemDataRole.UserRole


class SeriesBrowser(QWidget):
    series_activated = Signal(object)   # SeriesInfo

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.header = QLabel("No folder open", self)
        self.header.setWordWrap(True)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("seriesTree")
        self.tree.setHeaderHidden(True)
        self.tree.itemActivated.connect(self._on_activated)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addWidget(self.tree, 1)
        self.setMinimumWidth(240)
        self._series: list[SeriesInfo] = []

    @property
    def series(self) -> list[SeriesInfo]:
        return list(self._series)

    def items(self) -> list[QTreeWidgetItem]:
        """Every item that stands for a loadable series (folder nodes excluded), in display order."""
        found = []

        def walk(item: QTreeWidgetItem) -> None:
            if item.data(0, ROLE) is not None:
                found.append(item)
            for i in range(item.childCount()):
                walk(item.child(i))

        for i in range(self.tree.topLevelItemCount()):
            walk(self.tree.topLevelItem(i))
        return found

    def set_series(self, series: list[SeriesInfo], where: str = "", skipped: int = 0) -> None:
        self._series = list(series)
        self.tree.clear()
        volumes = sorted((s for s in series if s.kind != "image2d"), key=lambda s: -s.n_slices)
        images: dict[Path, list[SeriesInfo]] = defaultdict(list)
        for info in series:
            if info.kind == "image2d":
                images[info.paths[0].parent].append(info)
        for info in volumes:
            self.tree.addTopLevelItem(_series_item(info))
        for folder, infos in sorted(images.items()):
            if len(infos) == 1:
                self.tree.addTopLevelItem(_series_item(infos[0]))
                continue
            node = QTreeWidgetItem([f"{folder.name}/ · {len(infos)} images"])
            node.setToolTip(0, str(folder))
            node.setFlags(node.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            for info in sorted(infos, key=lambda s: s.paths[0].name):
                node.addChild(_series_item(info, short=True))
            self.tree.addTopLevelItem(node)
        extra = f" · {skipped} other file(s) ignored" if skipped else ""
        self.header.setText(f"{len(series)} series in {where}{extra}" if where else f"{len(series)} series{extra}")

    def mark_current(self, info: SeriesInfo | None) -> None:
        """Show the series now on screen in bold and select it."""
        for item in self.items():
            is_current = info is not None and item.data(0, ROLE) == info
            font = item.font(0)
            font.setBold(is_current)
            item.setFont(0, font)
            if is_current:
                self.tree.setCurrentItem(item)

    def _on_activated(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        info = item.data(0, ROLE)
        if info is not None:
            self.series_activated.emit(info)


def _series_item(info: SeriesInfo, short: bool = False) -> QTreeWidgetItem:
    item = QTreeWidgetItem([info.paths[0].name if short else info.label])
    tip = []
    if info.shape:
        tip.append("matrix " + " × ".join(str(s) for s in reversed(info.shape)))
    tip.append(f"{len(info.paths)} file(s) in {info.paths[0].parent}" if info.paths else "")
    tip += list(info.warnings)
    item.setToolTip(0, "\n".join(t for t in tip if t))
    item.setData(0, ROLE, info)
    return item
