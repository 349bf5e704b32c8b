"""Error dialogs that say what went wrong, with which file, and what to do -- shown without blocking."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

from engine.io import errors

# what the user can do about each kind of bad input
ADVICE: list[tuple[type[BaseException], str]] = [
    (errors.UnsupportedTransferSyntaxError,
     "The pixel data use a compression LungLens cannot decode. Convert the series to an uncompressed or "
     "JPEG-lossless transfer syntax (e.g. with dcmdjpeg or gdcmconv) and open it again."),
    (errors.TruncatedFileError, "The file is incomplete. Copy or export it again from the scanner or PACS."),
    (errors.EmptyFileError, "The file holds no data. Copy or export it again from the scanner or PACS."),
    (errors.NoPixelDataError, "This DICOM object holds no image (a report, a DICOMDIR, a presentation state). "
                              "Open the folder that holds the CT images."),
    (errors.UnsupportedImageError, "LungLens shows greyscale CT. Open the original CT series, not a colour "
                                   "screenshot or secondary capture."),
    (errors.InconsistentSeriesError, "The slices do not form one volume. Open the folder and pick a single "
                                     "series in the series browser, or re-export the series."),
    (errors.SymlinkLoopError, "A symbolic link under this folder points back into it. Open a folder without "
                              "the loop."),
    (errors.UnreadableFileError, "Check that the file is a CT image you may read (permissions, not empty)."),
    (errors.VolumeError, "Open a DICOM series (file, folder or DICOMDIR), a NIfTI/NRRD/MHA file or PNG/JPEG "
                         "slices."),
]


def advice_for(error: BaseException) -> str:
    for kind, advice in ADVICE:
        if isinstance(error, kind):
            return advice
    return "This is a bug in LungLens. Please report it with the details below."


def show_error(parent: QWidget | None, title: str, error: BaseException, details: str = "") -> QMessageBox:
    """Open a window-modal (non-blocking) message box for ``error`` and return it."""
    box = QMessageBox(parent)
    box.setObjectName("errorDialog")
    box.setIcon(QMessageBox.Icon.Warning if isinstance(error, errors.VolumeError) else QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    what = str(error) or type(error).__name__
    if not isinstance(error, errors.VolumeError):
        what = f"Unexpected error ({type(error).__name__}): {what}"
    box.setText(what)
    box.setInformativeText(advice_for(error))
    if details and not isinstance(error, errors.VolumeError):   # a traceback helps with bugs, not bad files
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.open()
    return box
