"""Jobs behind Tools ▸ Benchmark…: list the registered networks, run ``engine.bench.run_benchmark``, draw plots.

The panel runs the very benchmark ``lunglens-engine bench`` runs (same settings, same ``BenchReport``: JSON,
CSV and plots are interchangeable with the command line's).  Figures are built with matplotlib's pyplot-free
``Figure`` (``BenchReport.figures``) and rasterised with the Agg canvas *in the worker*, so the GUI thread only
wraps finished RGBA pixels in a ``QImage``.

Nothing here imports torch at module import: the engine is imported inside the jobs.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from viewer.workers.worker import JobContext

BACKEND_LABELS = {"onnx": "ONNX Runtime", "torch": "torch"}
FIGURE_TITLES = {
    "latency_vs_macs": "Latency vs MACs (scatter, GEMM-peak bound)",
    "accuracy_vs_macs": "Accuracy vs MACs (marker area = latency; papers' figures in red)",
    "latency_bars": "Latency per item (bars, per batch size)",
    "params_bars": "Parameters: ours vs the papers",
    "gemm_fraction_bars": "Achieved fraction of the GEMM peak",
}
QUICK = {"input_size": "test", "warmup": 1, "min_repeats": 3, "budget_s": 0.3}   # = lunglens-engine bench --quick


@dataclass(frozen=True)
class ModelInfo:
    """One registered network, as the model chooser lists it."""

    name: str
    spatial_dims: int
    giant: bool
    family: str
    paper: str
    input_size: tuple[int, ...]
    has_weights: bool

    @property
    def label(self) -> str:
        size = "×".join(str(s) for s in self.input_size)
        flags = " · weights" if self.has_weights else ""
        flags += " · giant" if self.giant else ""
        return f"{self.name}  ({self.spatial_dims}-D, {size}{flags})"


@dataclass(frozen=True)
class BenchSettings:
    """The panel's choices; ``run_kwargs()`` are ``run_benchmark``'s keywords."""

    models: tuple[str, ...]
    backends: tuple[str, ...] = ("onnx", "torch")
    batch_sizes: tuple[int, ...] = (1, 16)
    threads: int = 2
    quick: bool = False
    measure_gemm: bool = True
    include_giant: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False)   # more run_benchmark keywords (tests)

    def run_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"backends": tuple(self.backends), "batch_sizes": tuple(self.batch_sizes),
                              "threads": int(self.threads), "include_giant": True,   # names are explicit
                              "measure_gemm": bool(self.measure_gemm)}
        if self.quick:
            kw.update(QUICK)
        kw.update(self.extra)
        return kw

    def command_line(self) -> list[str]:
        """The equivalent ``lunglens-engine bench`` command."""
        argv = ["lunglens-engine", "bench", "--models", *self.models, "--backends", *self.backends,
                "--batch-sizes", *(str(b) for b in self.batch_sizes), "--threads", str(self.threads)]
        if self.quick:
            argv.append("--quick")
        if not self.measure_gemm:
            argv.append("--no-gemm")
        return argv

    def command_text(self) -> str:
        return shlex.join(self.command_line())


@dataclass
class BenchOutcome:
    """A finished (or cancelled: ``report.cancelled``) benchmark and its figures as RGBA pixels."""

    report: Any                                   # engine.bench.BenchReport
    images: dict[str, np.ndarray] = field(default_factory=dict)   # name -> (h, w, 4) uint8


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """``"1, 16"`` -> ``(1, 16)``; ValueError saying what is wrong."""
    parts = [p for p in text.replace(",", " ").replace(";", " ").split() if p]
    if not parts:
        raise ValueError("Give at least one batch size, e.g. 1, 16.")
    sizes = []
    for p in parts:
        try:
            b = int(p)
        except ValueError:
            raise ValueError(f"Batch size {p!r} is not a whole number; write e.g. 1, 16.") from None
        if not 1 <= b <= 512:
            raise ValueError(f"Batch size {b} is out of range (1 to 512).")
        sizes.append(b)
    return tuple(sorted(set(sizes)))


# --------------------------------------------------------------------------------------------- jobs
def list_models_job(context: JobContext) -> tuple[list[ModelInfo], list[Any]]:
    """(every registered network, giant ones included; the papers' reference rows)."""
    from engine.bench import load_references
    from engine.models.registry import list_models, model_config
    from engine.weights import list_weighted_models

    context.progress(None, None, "Listing the registered networks …")
    weighted = set(list_weighted_models())
    infos = []
    for name in list_models(include_giant=True):
        c = model_config(name)
        infos.append(ModelInfo(name=c.name, spatial_dims=int(c.spatial_dims), giant=bool(c.giant),
                               family=str(c.family), paper=str(c.paper or ""),
                               input_size=tuple(int(s) for s in c.input_size), has_weights=c.name in weighted))
    return infos, load_references()


def benchmark_job(context: JobContext, settings: BenchSettings, *, on_row: Callable[[Any], None] | None = None,
                  on_report: Callable[[BenchOutcome], None] | None = None, figures: Iterable[str] | None = None,
                  dpi: int = 90) -> BenchOutcome:
    """Run the benchmark; rows go to ``on_row`` as they are measured, then the ``figures`` named (default: all)
    are drawn.  The outcome goes to ``on_report`` too -- also when cancelled (the partial report, without
    figures), since a cancelled worker delivers no result."""
    from engine.bench import run_benchmark

    if not settings.models:
        raise ValueError("Choose at least one model to benchmark.")
    if not settings.backends:
        raise ValueError("Choose at least one back-end (ONNX Runtime or torch).")

    def progress(done: int, total: int, message: str) -> None:
        step = done if message in ("done", "cancelled") else done + 1
        context.progress(done, total, f"[{min(step, total)}/{total}] {message}")

    report = run_benchmark(list(settings.models), progress=progress, on_row=on_row, cancel=context.is_cancelled,
                           **settings.run_kwargs())
    outcome = BenchOutcome(report)
    if not report.cancelled:
        context.progress(None, None, "Drawing the plots …")
        outcome.images = render_figures(report, names=figures, dpi=dpi)
    if on_report is not None:
        on_report(outcome)
    return outcome


def render_job(context: JobContext, report: Any, names: Iterable[str] | None = None, dpi: int = 90
               ) -> dict[str, np.ndarray]:
    context.progress(None, None, "Drawing the plots …")
    return render_figures(report, names=names, dpi=dpi)


def load_report_job(context: JobContext, path: str | Path, figures: Iterable[str] | None = None,
                    dpi: int = 90) -> BenchOutcome:
    """A saved ``bench.json`` (from the panel or ``lunglens-engine bench --out``) with its figures."""
    from engine.bench import BenchReport

    context.progress(None, None, f"Reading {Path(path).name} …")
    try:
        report = BenchReport.from_json(Path(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a LungLens benchmark report (bench.json): {exc}") from exc
    return BenchOutcome(report, render_figures(report, names=figures, dpi=dpi))


def render_figures(report: Any, names: Iterable[str] | None = None, dpi: int = 90) -> dict[str, np.ndarray]:
    """name -> RGBA pixels of ``report.figures()`` (those in ``names``, default all) drawn with the Agg canvas
    (thread-safe, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    wanted = list(FIGURE_TITLES) if names is None else [n for n in names if n in FIGURE_TITLES]
    images = {}
    for name in wanted:
        fig = make_figure(report, name)     # one at a time: drawing only what is shown is quicker
        fig.set_dpi(dpi)
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        images[name] = np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
    return images


def make_figure(report: Any, name: str) -> Any:
    """One of the benchmark's figures (``engine.bench.plots``; the same as ``report.figures()[name]``)."""
    from engine.bench import plots

    if name not in FIGURE_TITLES:
        raise KeyError(f"no figure {name!r}; have {', '.join(FIGURE_TITLES)}")
    return getattr(plots, name)(report)


def save_figure_png(report: Any, name: str, path: str | Path, dpi: int = 150) -> Path:
    """One figure as a PNG file (print quality)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = make_figure(report, name)
    FigureCanvasAgg(fig)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def export_csv(report: Any, path: str | Path) -> tuple[Path, Path]:
    """The measured rows to ``path`` and the papers' reference rows next to it (``<stem>-references.csv``)."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path.with_suffix(".csv")
    refs = path.with_name(f"{path.stem}-references.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    report.to_csv(path)
    report.references_csv(refs)
    return path, refs


__all__ = ["BACKEND_LABELS", "FIGURE_TITLES", "BenchOutcome", "BenchSettings", "ModelInfo", "benchmark_job",
           "export_csv", "list_models_job", "load_report_job", "make_figure", "parse_batch_sizes", "render_figures",
           "render_job", "save_figure_png"]
