"""``InfoPanel``: patient-safe facts about the open series (no names, IDs or birth dates, ever)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from engine.io.volume import SAFE_META_KEYS, Volume
from viewer.model.slice_geometry import SliceGeometry, has_patient_geometry

FIELD_LABELS = {
    "SeriesDescription": "Series", "StudyDescription": "Study", "Modality": "Modality",
    "BodyPartExamined": "Body part", "StudyDate": "Study date", "SeriesNumber": "Series number",
    "Manufacturer": "Manufacturer", "ManufacturerModelName": "Scanner", "ConvolutionKernel": "Kernel",
    "KVP": "kVp", "SliceThickness": "Slice thickness (mm)", "PatientPosition": "Patient position",
    "WindowCenter": "Header window centre", "WindowWidth": "Header window width",
    "PhotometricInterpretation": "Photometric", "TransferSyntaxUID": "Transfer syntax",
}


def volume_facts(volume: Volume) -> list[tuple[str, str]]:
    """(label, value) rows for the panel, from patient-safe header fields and the volume's geometry."""
    rows: list[tuple[str, str]] = []
    for key in SAFE_META_KEYS:           # whitelist: anything else in meta is never shown
        value = volume.meta.get(key)
        if value not in (None, "", [], ()):
            rows.append((FIELD_LABELS.get(key, key), _field_text(key, value)))
    nz, ny, nx = volume.shape
    sz, sy, sx = volume.spacing
    rows.append(("Matrix (x × y × slices)", f"{nx} × {ny} × {nz}"))
    rows.append(("Voxel size (x × y × z)", f"{sx:.3g} × {sy:.3g} × {sz:.3g} mm"))
    rows.append(("Extent", f"{nx * sx:.0f} × {ny * sy:.0f} × {nz * sz:.0f} mm"))
    if has_patient_geometry(volume):
        labels = SliceGeometry.for_axis(volume.shape, volume.spacing, volume.direction, 0).labels
        rows.append(("Axial display", f"screen left {labels.left}, top {labels.top}"))
    else:
        rows.append(("Axial display", "orientation unknown (image file without patient geometry)"))
    rows.append(("Values", f"HU ({volume.array.dtype})" if volume.is_hu else f"not HU ({volume.array.dtype})"))
    if volume.array.size:   # sampled: a full min/max of a 300-slice float volume would stall the GUI thread
        sample = volume.array[::2, ::4, ::4]
        rows.append(("Value range ≈", f"{float(np.nanmin(sample)):.0f} … {float(np.nanmax(sample)):.0f}"))
    if volume.source:
        folder = volume.source[0].parent
        rows.append(("Files", f"{len(volume.source)} in {folder.name or folder}"))
    return rows


class InfoPanel(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.tree = QTreeWidget(self)
        self.tree.setObjectName("infoTree")
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Field", "Value"])
        self.tree.setRootIsDecorated(False)
        self.tree.setWordWrap(True)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.header().setStretchLastSection(True)
        self.setMinimumWidth(330)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tree)

    def show_volume(self, volume: Volume | None) -> None:
        self.tree.clear()
        if volume is None:
            return
        for label, value in volume_facts(volume):
            item = QTreeWidgetItem(self.tree, [label, value])
            item.setToolTip(1, value)
        for warning in volume.warnings:
            item = QTreeWidgetItem(self.tree, ["Warning", warning])
            item.setForeground(1, Qt.GlobalColor.darkYellow)
            item.setToolTip(1, warning)
        self.tree.resizeColumnToContents(0)

    def rows(self) -> dict[str, str]:
        return {self.tree.topLevelItem(i).text(0): self.tree.topLevelItem(i).text(1)
                for i in range(self.tree.topLevelItemCount())}


def _field_text(key: str, value: object) -> str:
    if key == "TransferSyntaxUID":
        try:
            from pydicom.uid import UID
            name = UID(str(value)).name
            return name if name and name != str(value) else str(value)
        except Exception:  # noqa: BLE001 - a label only
            return str(value)
    if key == "StudyDate" and isinstance(value, str) and len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return _text(value)


def _text(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return " \\ ".join(_text(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
