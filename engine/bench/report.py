"""Benchmark results: typed rows, the papers' reference rows, and JSON / CSV / plot output.

``BenchReport`` is what :func:`engine.bench.run_benchmark` returns and what the viewer's Benchmark panel
shows: ``rows`` (one per model × back-end), ``references`` (the papers' own figures), ``gemm`` (this machine's
fp32 GEMM peak measured in the same run) and ``machine`` / ``settings``.  ``to_json`` / ``from_json`` round-trip;
``to_csv`` writes one flat line per row (latency columns per batch size); ``plot(dir)`` writes PNGs and
``figures()`` returns the same matplotlib ``Figure`` objects (pyplot-free, safe to build off the GUI thread).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from engine.bench.gemm import GemmPeak
from engine.bench.timing import LatencyStats

REPORT_FORMAT = 1


@dataclass
class BenchRow:
    """One model measured on one back-end."""

    model: str
    backend: str                                   # "torch", "onnx" (ONNX Runtime fp32) or "onnx-int8"
    family: str = ""
    paper: str = ""
    spatial_dims: int = 2
    input_shape: tuple[int, ...] = ()              # C×H×W or C×D×H×W, no batch
    num_classes: int = 0
    threads: int = 1
    giant: bool = False
    weights: str = "random"                        # "random" or "default" (shipped, evaluated weights)
    weights_sha256: str | None = None
    params_trainable: int | None = None
    params_keras: int | None = None                # trainable + BN running mean/var (Keras model.summary total)
    size_mb: float | None = None                   # params_trainable × 4 B / 2^20 (P4's convention)
    macs: float | None = None                      # multiply-accumulates per item, all kernel dims
    latency: dict[int, LatencyStats] = field(default_factory=dict)   # batch size -> stats of one batch call
    gemm_fraction: dict[int, float] = field(default_factory=dict)    # batch size -> 2·MACs/t / GEMM peak (p50)
    peak_mem_mb: float | None = None               # RSS increase while building + running (weights + activations)
    build_seconds: float | None = None             # model build + export/load of the back-end
    accuracy: float | None = None                  # from the weights' manifest (fractions 0..1)
    sensitivity: float | None = None
    specificity: float | None = None
    auc: float | None = None
    sens_per_mparam: float | None = None           # P0 Table 7: sensitivity (%) / params (millions)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    # -------------------------------------------------------------------------------- conveniences
    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.latency)

    def ms_per_item(self, batch: int) -> float | None:
        s = self.latency.get(batch)
        return None if s is None else s.p50_ms_per_item

    def throughput(self, batch: int) -> float | None:
        s = self.latency.get(batch)
        return None if s is None else s.throughput

    @property
    def best_ms_per_item(self) -> float | None:
        values = [s.p50_ms_per_item for s in self.latency.values()]
        return min(values) if values else None

    @property
    def gmacs(self) -> float | None:
        return None if self.macs is None else self.macs / 1e9

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["latency"] = {str(b): s.to_dict() for b, s in sorted(self.latency.items())}
        d["gemm_fraction"] = {str(b): v for b, v in sorted(self.gemm_fraction.items())}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchRow":
        d = dict(d)
        d["input_shape"] = tuple(d.get("input_shape") or ())
        d["latency"] = {int(b): LatencyStats.from_dict(s) for b, s in (d.get("latency") or {}).items()}
        d["gemm_fraction"] = {int(b): float(v) for b, v in (d.get("gemm_fraction") or {}).items()}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class ReferenceRow:
    """A figure a paper reports for its own model (see ``reference_figures.json``).  None = not reported."""

    paper: str
    label: str
    model: str | None = None                       # registry name it corresponds to, if any
    params: float | None = None
    size_mb: float | None = None
    macs: float | None = None
    time_per_image_s: float | None = None
    hardware: str | None = None
    accuracy: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    precision: float | None = None
    f1: float | None = None
    sens_per_mparam: float | None = None
    input: str | None = None
    dataset: str | None = None
    source: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ReferenceRow":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def load_references(path: str | Path | None = None) -> list[ReferenceRow]:
    """The papers' figures shipped with the engine (``engine/bench/reference_figures.json``)."""
    if path is None:
        from importlib import resources

        text = resources.files("engine.bench").joinpath("reference_figures.json").read_text(encoding="utf-8")
    else:
        text = Path(path).read_text(encoding="utf-8")
    return [ReferenceRow.from_dict(r) for r in json.loads(text)["rows"]]


# ----------------------------------------------------------------------------------------------- report
BASE_COLUMNS = ("model", "backend", "family", "paper", "spatial_dims", "input_shape", "num_classes", "threads",
                "giant", "weights", "params_trainable", "params_keras", "size_mb", "gmacs", "peak_mem_mb",
                "build_seconds", "accuracy", "sensitivity", "specificity", "auc", "sens_per_mparam", "error")
BATCH_COLUMNS = ("p50_ms", "p90_ms", "min_ms", "ms_per_item", "throughput_per_s", "gemm_fraction",
                 "cpu_est_ms_per_item")


@dataclass
class BenchReport:
    rows: list[BenchRow] = field(default_factory=list)
    references: list[ReferenceRow] = field(default_factory=list)
    gemm: GemmPeak | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    started: str = ""
    seconds: float = 0.0
    cancelled: bool = False

    # -------------------------------------------------------------------------------- queries
    @property
    def batch_sizes(self) -> list[int]:
        return sorted({b for r in self.rows for b in r.latency})

    def row(self, model: str, backend: str) -> BenchRow | None:
        return next((r for r in self.rows if r.model == model and r.backend == backend), None)

    def references_for(self, model: str) -> list[ReferenceRow]:
        return [r for r in self.references if r.model == model]

    # -------------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "started": self.started,
            "seconds": self.seconds,
            "cancelled": self.cancelled,
            "machine": self.machine,
            "settings": self.settings,
            "gemm": None if self.gemm is None else self.gemm.to_dict(),
            "rows": [r.to_dict() for r in self.rows],
            "references": [r.to_dict() for r in self.references],
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        text = json.dumps(_finite(self.to_dict()), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BenchReport":
        return cls(rows=[BenchRow.from_dict(r) for r in d.get("rows", [])],
                   references=[ReferenceRow.from_dict(r) for r in d.get("references", [])],
                   gemm=None if not d.get("gemm") else GemmPeak.from_dict(d["gemm"]),
                   machine=dict(d.get("machine") or {}), settings=dict(d.get("settings") or {}),
                   started=str(d.get("started", "")), seconds=float(d.get("seconds", 0.0)),
                   cancelled=bool(d.get("cancelled", False)))

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "BenchReport":
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    # -------------------------------------------------------------------------------- CSV
    def csv_columns(self) -> list[str]:
        cols = list(BASE_COLUMNS)
        for b in self.batch_sizes:
            cols += [f"b{b}_{c}" for c in BATCH_COLUMNS]
        return cols

    def table(self) -> list[dict[str, Any]]:
        """Flat dicts (one per row) with the CSV columns; what a table widget shows."""
        out = []
        for r in self.rows:
            d: dict[str, Any] = {c: getattr(r, c, None) for c in BASE_COLUMNS}
            d["input_shape"] = "x".join(str(s) for s in r.input_shape)
            d["gmacs"] = r.gmacs
            for b in self.batch_sizes:
                s = r.latency.get(b)
                d[f"b{b}_p50_ms"] = None if s is None else s.p50_ms
                d[f"b{b}_p90_ms"] = None if s is None else s.p90_ms
                d[f"b{b}_min_ms"] = None if s is None else s.min_ms
                d[f"b{b}_ms_per_item"] = None if s is None else s.p50_ms_per_item
                d[f"b{b}_throughput_per_s"] = None if s is None else s.throughput
                d[f"b{b}_gemm_fraction"] = r.gemm_fraction.get(b)
                d[f"b{b}_cpu_est_ms_per_item"] = (None if s is None or s.cpu_min_ms is None
                                                  else s.cpu_min_ms / max(1, r.threads) / b)
            out.append(d)
        return out

    def to_csv(self, path: str | Path | None = None) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.csv_columns(), lineterminator="\n")
        writer.writeheader()
        for d in self.table():
            writer.writerow({k: _csv_value(v) for k, v in d.items()})
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def references_csv(self, path: str | Path | None = None) -> str:
        buf = io.StringIO()
        cols = list(ReferenceRow.__dataclass_fields__)
        writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        writer.writeheader()
        for r in self.references:
            writer.writerow({k: _csv_value(v) for k, v in r.to_dict().items()})
        text = buf.getvalue()
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    # -------------------------------------------------------------------------------- plots / files
    def figures(self) -> dict[str, Any]:
        """name -> matplotlib ``Figure`` (not attached to pyplot; embed with FigureCanvasQTAgg or save)."""
        from engine.bench.plots import make_figures

        return make_figures(self)

    def plot(self, out_dir: str | Path, *, dpi: int = 120, only: Iterable[str] | None = None) -> list[Path]:
        """Write every figure (or those named in ``only``) as ``<out_dir>/<name>.png``; returns the paths."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        wanted = None if only is None else set(only)
        for name, fig in self.figures().items():
            if wanted is not None and name not in wanted:
                continue
            FigureCanvasAgg(fig)
            path = out / f"{name}.png"
            fig.savefig(path, dpi=dpi)
            paths.append(path)
        return paths

    def save(self, out_dir: str | Path, *, plots: bool = True, dpi: int = 120) -> dict[str, Path]:
        """``bench.json``, ``bench.csv``, ``references.csv`` and (optionally) the PNGs into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        files = {"json": out / "bench.json", "csv": out / "bench.csv", "references_csv": out / "references.csv"}
        self.to_json(files["json"])
        self.to_csv(files["csv"])
        self.references_csv(files["references_csv"])
        if plots:
            for p in self.plot(out, dpi=dpi):
                files[p.stem] = p
        return files

    # -------------------------------------------------------------------------------- text
    def summary(self) -> str:
        """A fixed-width text table (what the CLI prints without --json)."""
        bs = self.batch_sizes
        head = f"{'model':24s} {'backend':9s} {'params':>10s} {'MB':>7s} {'GMACs':>8s}"
        for b in bs:
            head += f" {'b' + str(b) + ' ms/it':>11s} {'%peak':>6s}"
        head += f" {'mem MB':>8s}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            if r.error:
                lines.append(f"{r.model:24s} {r.backend:9s} ERROR: {r.error[:120]}")
                continue
            line = (f"{r.model:24s} {r.backend:9s} {_fmt_int(r.params_trainable):>10s} {_fmt(r.size_mb, 1):>7s} "
                    f"{_fmt(r.gmacs, 3):>8s}")
            for b in bs:
                frac = r.gemm_fraction.get(b)
                line += f" {_fmt(r.ms_per_item(b), 2):>11s} {_fmt(None if frac is None else 100 * frac, 0):>6s}"
            line += f" {_fmt(r.peak_mem_mb, 0):>8s}"
            lines.append(line)
        if self.gemm is not None:
            lines.append(f"fp32 GEMM peak: {self.gemm.gflops:.1f} GFLOP/s (best of {self.gemm.repeats}, "
                         f"n={self.gemm.n}, {self.gemm.threads} threads; median {self.gemm.gflops_p50:.1f})")
        if self.machine.get("loadavg_before") is not None:
            lines.append(f"load average before/after: {self.machine.get('loadavg_before')} / "
                         f"{self.machine.get('loadavg_after')} (on {self.machine.get('cpus')} CPUs)")
        if self.cancelled:
            lines.append("(cancelled: partial results)")
        return "\n".join(lines)


def _finite(obj: Any) -> Any:
    """JSON has no NaN/inf: map them to None recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    return v


def _fmt(v: float | None, digits: int) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _fmt_int(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def rows_by_model(rows: Iterable[BenchRow]) -> dict[str, list[BenchRow]]:
    out: dict[str, list[BenchRow]] = {}
    for r in rows:
        out.setdefault(r.model, []).append(r)
    return out
