"""Batch screening: discover -> load -> preprocess -> infer -> explain -> results DB / CSV / PDF report.

``engine.screen.pipeline`` is the scan-level road (``ScanModel.open(name).screen(volume)``) that the viewer
uses too; everything else here builds the batch job on top of it:

* ``job.ScreeningJob(inputs, model, out_dir, explainer=, workers=, scheduler=).run(progress=, cancel=)``
* ``store.read_results(out_dir)`` — the results table, most suspicious first (path, series UID, top slice)
* ``task.screen_series`` — one series, wherever it runs (this process, a worker process, a Dask worker)
* ``report.write_report(out_dir)`` — report.pdf from the results database
* ``cli`` — ``lunglens-screen`` / ``lunglens-engine screen``
"""

from engine.screen.pipeline import ScanModel, ScanResult, ScreeningCancelled, ScreeningError
from engine.screen.job import JobError, JobProgress, JobSummary, OutputInsideInputError, ScreeningJob
from engine.screen.store import StoreError, read_results

__all__ = ["ScanModel", "ScanResult", "ScreeningCancelled", "ScreeningError", "ScreeningJob", "JobProgress",
           "JobSummary", "JobError", "OutputInsideInputError", "StoreError", "read_results"]
