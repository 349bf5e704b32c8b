"""Benchmark figures, built with ``matplotlib.figure.Figure`` directly (no pyplot state, no GUI backend).

* ``latency_vs_macs``   — ms per item vs GMACs (log-log) per back-end, with the GEMM-peak bound 2·MACs/peak.
* ``accuracy_vs_macs``  — accuracy vs GMACs, marker area ∝ latency; our evaluated weights and the papers'
                          reported accuracy placed at the MACs we count for the same architecture.
* ``latency_bars``      — ms per item per model and back-end, one panel per batch size.
* ``params_bars``       — trainable parameters: ours vs the papers' figures.
* ``gemm_fraction_bars`` — achieved fraction of this machine's fp32 GEMM peak.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from engine.bench.report import BenchReport

BACKEND_STYLE = {"onnx": ("tab:blue", "o"), "torch": ("tab:orange", "s"), "onnx-int8": ("tab:green", "^")}
REF_STYLE = ("tab:red", "*")


def _style(backend: str) -> tuple[str, str]:
    return BACKEND_STYLE.get(backend, ("tab:gray", "D"))


def _fig(w: float = 8.0, h: float = 5.0) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), layout="constrained")


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def make_figures(report: "BenchReport") -> dict[str, Any]:
    return {
        "latency_vs_macs": latency_vs_macs(report),
        "accuracy_vs_macs": accuracy_vs_macs(report),
        "latency_bars": latency_bars(report),
        "params_bars": params_bars(report),
        "gemm_fraction_bars": gemm_fraction_bars(report),
    }


def _main_batch(report: "BenchReport") -> int | None:
    bs = report.batch_sizes
    return max(bs) if bs else None


def latency_vs_macs(report: "BenchReport") -> Any:
    fig = _fig()
    ax = fig.add_subplot()
    b = _main_batch(report)
    pts = [r for r in report.rows if r.ok and r.macs and b in r.latency]
    if not pts:
        _empty(ax, "no latency measured")
        return fig
    for backend in sorted({r.backend for r in pts}):
        color, marker = _style(backend)
        sel = [r for r in pts if r.backend == backend]
        ax.scatter([r.gmacs for r in sel], [r.ms_per_item(b) for r in sel], c=color, marker=marker, s=36,
                   label=f"{backend} (batch {b})", zorder=3)
        for r in sel:
            ax.annotate(r.model, (r.gmacs, r.ms_per_item(b)), fontsize=7, xytext=(3, 3),
                        textcoords="offset points", color="0.25")
    if report.gemm is not None and report.gemm.gflops > 0:
        xs = [r.gmacs for r in pts]
        lo, hi = min(xs) / 1.5, max(xs) * 1.5
        ax.plot([lo, hi], [2 * lo / report.gemm.gflops * 1e3, 2 * hi / report.gemm.gflops * 1e3], "k--", lw=1,
                label=f"GEMM peak bound ({report.gemm.gflops:.0f} GFLOP/s)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("GMACs per item")
    ax.set_ylabel("ms per item (p50)")
    ax.set_title(f"Latency vs compute — {report.machine.get('threads', '?')} threads")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def accuracy_vs_macs(report: "BenchReport") -> Any:
    fig = _fig()
    ax = fig.add_subplot()
    b = _main_batch(report)
    ms_of: dict[str, float] = {}
    for r in report.rows:
        if r.ok and b in r.latency:
            ms = r.ms_per_item(b)
            ms_of[r.model] = min(ms_of.get(r.model, math.inf), ms)
    plotted = False
    ours = [r for r in report.rows if r.accuracy is not None and r.gmacs]
    if ours:
        seen = set()
        for r in ours:
            if r.model in seen:
                continue
            seen.add(r.model)
            size = 20 + 4 * min(ms_of.get(r.model, 5.0), 200.0)
            ax.scatter([r.gmacs], [r.accuracy], s=size, c="tab:blue", alpha=0.7, edgecolors="k", zorder=3)
            ax.annotate(r.model, (r.gmacs, r.accuracy), fontsize=7, xytext=(4, 4), textcoords="offset points")
        plotted = True
    refs = [(ref, _ref_gmacs(report, ref)) for ref in report.references if ref.accuracy is not None]
    refs = [(ref, x) for ref, x in refs if x]
    if refs:
        color, marker = REF_STYLE
        ax.scatter([x for _, x in refs], [ref.accuracy for ref, _ in refs], c=color, marker=marker, s=70,
                   zorder=2, label="paper-reported accuracy (at our MAC count)")
        for ref, x in refs:
            ax.annotate(ref.label, (x, ref.accuracy), fontsize=6, xytext=(4, -8), textcoords="offset points",
                        color="tab:red")
        plotted = True
    if not plotted:
        _empty(ax, "no evaluated weights and no paper accuracy for the benchmarked models")
        return fig
    if ours:
        ax.scatter([], [], s=60, c="tab:blue", edgecolors="k", label="LungLens weights (area ∝ latency)")
    ax.set_xscale("log")
    ax.set_xlabel("GMACs per item")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy vs compute (papers' datasets and metrics differ)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _ref_gmacs(report: "BenchReport", ref: Any) -> float | None:
    """GMACs to plot a paper's figure at: its own, else ours for the same model *at the same input* (a
    reference with an ``input`` like "32x128x128" must match the run's spatial size; one without must be
    compared with a run at the native size)."""
    if ref.macs:
        return ref.macs / 1e9
    for r in report.rows:
        if r.model != ref.model or not r.gmacs:
            continue
        spatial = "x".join(str(s) for s in r.input_shape[1:])
        if ref.input:
            if ref.input == spatial:
                return r.gmacs
        elif report.settings.get("input_size", "native") == "native":
            return r.gmacs
    return None


def latency_bars(report: "BenchReport") -> Any:
    bs = report.batch_sizes
    rows = [r for r in report.rows if r.ok]
    models = list(dict.fromkeys(r.model for r in rows))
    fig = _fig(4.0 + 3.0 * max(1, len(bs)), max(3.0, 0.3 * len(models) + 1.5))
    if not rows:
        _empty(fig.add_subplot(), "no latency measured")
        return fig
    axes = fig.subplots(1, len(bs), sharey=True, squeeze=False)[0]
    backends = sorted({r.backend for r in rows})
    height = 0.8 / max(1, len(backends))
    for ax, b in zip(axes, bs):
        for j, backend in enumerate(backends):
            color, _ = _style(backend)
            ys, xs = [], []
            for i, m in enumerate(models):
                r = next((x for x in rows if x.model == m and x.backend == backend), None)
                if r is not None and r.ms_per_item(b) is not None:
                    ys.append(i + j * height)
                    xs.append(r.ms_per_item(b))
            ax.barh(ys, xs, height=height, color=color, label=backend)
        ax.set_yticks([i + 0.4 - height / 2 for i in range(len(models))], models, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(f"ms per item, batch {b} (p50)")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("CPU latency per item")
    return fig


def params_bars(report: "BenchReport") -> Any:
    ours: dict[str, int] = {}
    for r in report.rows:
        if r.params_trainable:
            ours.setdefault(r.model, r.params_trainable)
    models = list(ours)
    fig = _fig(8.0, max(3.0, 0.3 * len(models) + 1.5))
    ax = fig.add_subplot()
    if not models:
        _empty(ax, "no parameter counts")
        return fig
    ref_params: dict[str, float] = {}
    for ref in report.references:
        if ref.model in ours and ref.params and ref.model not in ref_params:
            ref_params[ref.model] = ref.params
    ys = range(len(models))
    ax.barh([y - 0.2 for y in ys], [ours[m] / 1e6 for m in models], height=0.4, color="tab:blue",
            label="LungLens (trainable)")
    ax.barh([y + 0.2 for y in ys], [ref_params.get(m, 0) / 1e6 for m in models], height=0.4, color="tab:red",
            label="paper figure")
    ax.set_yticks(list(ys), models, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("parameters (millions)")
    ax.set_title("Model size: ours vs the papers (configuration of the run; papers mostly 3-channel input)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def gemm_fraction_bars(report: "BenchReport") -> Any:
    b = _main_batch(report)
    rows = [r for r in report.rows if r.ok and b in r.gemm_fraction]
    models = list(dict.fromkeys(r.model for r in rows))
    fig = _fig(8.0, max(3.0, 0.3 * len(models) + 1.5))
    ax = fig.add_subplot()
    if not rows:
        _empty(ax, "no GEMM fraction (MACs or GEMM peak missing)")
        return fig
    backends = sorted({r.backend for r in rows})
    height = 0.8 / len(backends)
    for j, backend in enumerate(backends):
        color, _ = _style(backend)
        ys, xs = [], []
        for i, m in enumerate(models):
            r = next((x for x in rows if x.model == m and x.backend == backend), None)
            if r is not None:
                ys.append(i + j * height)
                xs.append(100 * r.gemm_fraction[b])
        ax.barh(ys, xs, height=height, color=color, label=backend)
    ax.axvline(100, color="k", ls="--", lw=1)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(models))], models, fontsize=7)
    ax.invert_yaxis()
    peak = f"{report.gemm.gflops:.0f} GFLOP/s" if report.gemm else "?"
    ax.set_xlabel(f"% of fp32 GEMM peak ({peak}), batch {b}")
    ax.set_title("Achieved fraction of this machine's GEMM peak (2·MACs / time)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8)
    return fig
