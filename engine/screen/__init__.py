"""Batch screening: discover -> load -> preprocess -> infer -> explain -> results DB / CSV / PDF report.

``engine.screen.pipeline`` is the scan-level road (``ScanModel.open(name).screen(volume)``) that the viewer
uses too; everything else here builds the batch job on top of it.
"""

from engine.screen.pipeline import ScanModel, ScanResult, ScreeningCancelled, ScreeningError

__all__ = ["ScanModel", "ScanResult", "ScreeningCancelled", "ScreeningError"]
