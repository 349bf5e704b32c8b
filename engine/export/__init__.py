"""Exports of LungLens results that other tools open: DICOM Secondary Capture of heatmaps (for PACS).

``secondary_capture``: :func:`heatmap_secondary_capture` renders slice(s) + heatmap with a burned-in
"NOT FOR DIAGNOSIS" label into a :class:`SecondaryCaptureImage` (new UIDs, same study as the source), whose
``save()`` refuses the source scan's folder; ``engine.pacs`` clients ``send()`` it to a PACS.
"""

from engine.export.secondary_capture import (
    NOT_FOR_DIAGNOSIS, ExportError, SecondaryCaptureImage, burn_in, heatmap_secondary_capture, render_overlay,
)

__all__ = ["NOT_FOR_DIAGNOSIS", "ExportError", "SecondaryCaptureImage", "burn_in", "heatmap_secondary_capture",
           "render_overlay"]
