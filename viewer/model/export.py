"""What the viewer exports, Qt-free: where it may write, and the heatmap as a DICOM Secondary Capture.

* Exports never go into the folder of the scan on screen (nor below it): a user's scan folders stay untouched
  (:func:`check_export_target`).  The default destination is ``~/LungLens exports``.
* :func:`heatmap_capture` burns the current heatmap layer, exactly as displayed (window, colour map, scale,
  threshold, opacity), into the CT slice(s) with a "NOT FOR DIAGNOSIS" annotation, as a Secondary Capture with
  new UIDs in the source study (``engine.export.secondary_capture``), so any PACS viewer shows it next to the CT.
  The pixels keep the source slice's row/column order, i.e. a PACS viewer displays them exactly like the CT.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.io.volume import Volume
from viewer.model.layers import HeatmapLayer
from viewer.model.window_level import WindowLevel

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima", "")


class ExportRefused(ValueError):
    """The export cannot be written where or as asked (the message says why and what to do)."""


def default_export_dir() -> Path:
    return Path.home() / "LungLens exports"


def source_folders(volume: Volume | None) -> list[Path]:
    """Folders holding the files of the open scan (resolved)."""
    if volume is None:
        return []
    folders = []
    for path in volume.source:
        folder = Path(path).resolve().parent
        if folder not in folders:
            folders.append(folder)
    return folders


def check_export_target(target: str | Path, volume: Volume | None) -> Path:
    """``target`` resolved, or ExportRefused if it lies in (or below) a folder of the open scan's files."""
    path = Path(target).expanduser().resolve()
    for folder in source_folders(volume):
        if path.parent == folder or folder in path.parents:
            raise ExportRefused(f"refusing to write {path}: it is inside the folder of the scan on screen "
                                f"({folder}). LungLens never writes next to your scans; choose another folder, "
                                f"e.g. {default_export_dir()}")
    if not path.parent.is_dir():
        raise ExportRefused(f"cannot write {path}: the folder {path.parent} does not exist")
    return path


def dicom_sources(volume: Volume, slices: Sequence[int]) -> list[Path]:
    """The DICOM file of each axial slice in ``slices``; ExportRefused for non-DICOM scans."""
    sources = [Path(p) for p in volume.source]
    nz = volume.shape[0]
    if not sources or any(p.suffix.lower() not in DICOM_SUFFIXES for p in sources) or \
            any(p.name.lower().endswith((".nii", ".nii.gz")) for p in sources):
        raise ExportRefused("a DICOM Secondary Capture needs a DICOM scan to attach to (this one was read from "
                            f"{sources[0].name if sources else 'memory'}); export the view as PNG instead")
    if len(sources) == nz:
        return [sources[int(z)] for z in slices]
    if len(sources) == 1:          # one multi-frame file: every frame derives from it
        return [sources[0]] * len(slices)
    raise ExportRefused(f"cannot tell which of the {len(sources)} source files holds each of the {nz} slices; "
                        "export the view as PNG instead")


def heatmap_capture(volume: Volume, layer: HeatmapLayer, window: WindowLevel, slices: Sequence[int], *,
                    score: float | None = None, **kwargs):
    """A ``SecondaryCaptureImage`` of ``layer`` over ``slices`` (one slice: single frame; more: multi-frame)."""
    from engine.export.secondary_capture import heatmap_secondary_capture

    slices = [int(z) for z in slices]
    if not slices:
        raise ExportRefused("no slice to export")
    if layer.signed:
        raise ExportRefused("the difference view is not exported as DICOM; export it as PNG")
    missing = [z for z in slices if not layer.has_slice(z)]
    if missing:
        raise ExportRefused(f"the heatmap of slice {missing[0] + 1} has not been computed yet; show it first")
    lo, _hi = layer.scale
    images = np.stack([volume.array[z] for z in slices]).astype(np.float32)
    heat = np.stack([np.nan_to_num(layer.slice(z), nan=lo) for z in slices]).astype(np.float32)
    if len(slices) == 1:
        images, heat = images[0], heat[0]
    info = layer.info
    kwargs.setdefault("series_description", f"LungLens {info.get('model', 'model')} "
                                            f"{info.get('explainer_label', '')} (NOT FOR DIAGNOSIS)".strip())
    return heatmap_secondary_capture(
        [str(p) for p in dicom_sources(volume, slices)], images, heat,
        window=(window.level, window.width), colormap=layer.colormap, opacity=layer.opacity,
        threshold=layer.threshold, heat_range=layer.scale, is_hu=volume.is_hu,
        model_name=str(info.get("model", "")), explainer=str(info.get("explainer_label", "")), score=score,
        **kwargs)
