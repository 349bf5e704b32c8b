"""``report.pdf`` of a screening job, rebuilt from ``results.sqlite`` (so it is complete after any resume).

Pages: (1) the summary — model, weights, settings, counts, the "research use, not a diagnosis" notice and the
table of every series sorted by suspicion (continued on further pages); (2) one page per flagged scan — its key
slices (CT in the lung window above the same slice with its heatmap), the per-slice score profile with the
threshold and the slices that entered the aggregation; (3) failed series with their reasons and files that
were not screened; (4) the model card of the weights.  Every page carries the notice in its footer.

Matplotlib without pyplot (``Figure`` + ``PdfPages``): no global backend state, safe inside the GUI process.
Images come from the job's heatmap PNGs; no volume is reloaded, so the report costs little memory.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from engine.screen.store import REPORT_NAME, ResultsStore

A4 = (8.27, 11.69)
NOTICE = ("RESEARCH USE ONLY — NOT A DIAGNOSIS. Scores and heatmaps are suggestions of a machine-learning model "
          "for trained readers; they are not a medical device output and must not be the sole basis of any "
          "clinical decision. A low score does not exclude disease.")
FOOTER = "LungLens research output — not a diagnosis"
ROWS_FIRST_PAGE = 26
ROWS_PER_PAGE = 44
FLAG_COLOUR = "#b2182b"
OK_COLOUR = "#2166ac"
GREY = "#555555"


def _short(text: Any, n: int) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[: max(1, n - 1)] + "…"


def _fmt_p(p: Any) -> str:
    return "—" if p is None else f"{float(p):.3f}"


class _Doc:
    """Page bookkeeping: a list of page painters, then one pass that numbers and saves them."""

    def __init__(self) -> None:
        self.pages: list[Callable[[Any], None]] = []

    def add(self, painter: Callable[[Any], None]) -> None:
        self.pages.append(painter)

    def save(self, path: Path, metadata: dict[str, str]) -> None:
        from matplotlib.backends.backend_pdf import PdfPages
        from matplotlib.figure import Figure

        n = len(self.pages)
        with PdfPages(str(path), metadata=metadata) as pdf:
            for i, paint in enumerate(self.pages, start=1):
                fig = Figure(figsize=A4)
                paint(fig)
                fig.text(0.06, 0.022, FOOTER, fontsize=7, color=FLAG_COLOUR, weight="bold")
                fig.text(0.94, 0.022, f"page {i} / {n}", fontsize=7, color=GREY, ha="right")
                pdf.savefig(fig)
                fig.clf()


def _notice(fig: Any, y: float) -> float:
    """The notice box at height ``y`` (figure fraction, top); returns the y below it."""
    head, _, body = NOTICE.partition(". ")
    lines = textwrap.wrap(body, 118)
    h = 0.016 * (len(lines) + 1) + 0.016
    fig.add_artist(_rect(fig, 0.06, y - h, 0.88, h, "#fde0dd", FLAG_COLOUR))
    fig.text(0.075, y - 0.02, head, fontsize=9.5, color=FLAG_COLOUR, weight="bold")
    for i, line in enumerate(lines):
        fig.text(0.075, y - 0.038 - i * 0.016, line, fontsize=8, color=FLAG_COLOUR)
    return y - h - 0.015


def _rect(fig: Any, x: float, y: float, w: float, h: float, face: str, edge: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, transform=fig.transFigure, facecolor=face, edgecolor=edge, linewidth=1.0)


# ---------------------------------------------------------------------------------------------- pages
_COLS = (  # (header, x position, max chars, key)
    ("#", 0.06, 4, "rank"), ("scan", 0.095, 11, "scan_id"), ("series", 0.19, 34, "description"),
    ("slices", 0.50, 6, "n_slices"), ("P", 0.565, 6, "probability"), ("flag", 0.63, 5, "flagged"),
    ("top z", 0.685, 6, "top_slice"), ("status / reason", 0.75, 30, "status"),
)


def _table(fig: Any, rows: Sequence[dict[str, Any]], y: float, step: float = 0.0185) -> None:
    for head, x, _n, _k in _COLS:
        fig.text(x, y, head, fontsize=7.5, weight="bold", color="#222222")
    fig.add_artist(_hline(fig, y - 0.005))
    y -= step
    for r in rows:
        failed = r.get("status") != "ok"
        colour = GREY if failed else (FLAG_COLOUR if r.get("flagged") else "#111111")
        for _head, x, n, key in _COLS:
            if key == "probability":
                text = _fmt_p(r.get("probability"))
            elif key == "flagged":
                text = "YES" if r.get("flagged") else ("" if failed else "no")
            elif key == "status":
                text = "ok" if not failed else f"FAILED: {r.get('reason') or ''}"
            elif key == "description":
                text = r.get("description") or Path(str(r.get("path") or "")).name
            else:
                text = r.get(key)
            fig.text(x, y, _short("" if text is None else text, n), fontsize=7, color=colour,
                     weight="bold" if (key == "flagged" and r.get("flagged")) else "normal")
        y -= step


def _hline(fig: Any, y: float) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([0.06, 0.94], [y, y], transform=fig.transFigure, color="#999999", linewidth=0.6)


def _summary_header(fig: Any, meta: dict[str, Any], counts: dict[str, Any], hide_paths: bool,
                    out_dir: Path) -> float:
    fig.text(0.06, 0.955, "LungLens — batch screening report", fontsize=17, weight="bold")
    fig.text(0.06, 0.935, f"generated {time.strftime('%Y-%m-%d %H:%M')}"
             + ("" if hide_paths else f" · {_short(out_dir, 80)}"), fontsize=8, color=GREY)
    y = _notice(fig, 0.92)
    manifest = meta.get("manifest") or {}
    metrics = manifest.get("metrics") or {}
    metric_text = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))[:120]
    data = manifest.get("data") or {}
    lines = [
        ("Model", f"{meta.get('model')}  (weights sha256 {str(meta.get('weights_sha256') or '?')[:16]}…)"),
        ("Classes", f"{', '.join(manifest.get('classes', []))}; screened for "
                    f"{manifest.get('positive_class') or '?'}"),
        ("Trained on", _short(data.get("dataset") or data.get("name") or "not recorded", 95)),
        ("Reported metrics", metric_text or "not recorded"),
        ("Settings", f"flag at P ≥ {float(meta.get('threshold', 0.5)):.2f} · explainer {meta.get('explainer')} · "
                     f"{meta.get('key_slices')} key slices · scan score = top-k mean of lung-slice scores"),
        ("Series", f"{counts['total']} in total: {counts['ok']} screened, {counts['flagged']} flagged, "
                   f"{counts['failed']} failed" + (f"; {counts['skipped']} non-image files ignored"
                                                   if counts['skipped'] else "")),
    ]
    if counts.get("incomplete"):
        lines.append(("Status", "INCOMPLETE — the job was stopped; rerun the same command to finish it"))
    for i, (k, v) in enumerate(lines):
        fig.text(0.06, y - i * 0.019, k, fontsize=8.5, weight="bold")
        fig.text(0.22, y - i * 0.019, v, fontsize=8.5,
                 color=FLAG_COLOUR if k == "Status" else "#111111")
    y -= len(lines) * 0.019 + 0.012
    fig.text(0.06, y, "All series, most suspicious first", fontsize=11, weight="bold")
    return y - 0.022


def _scan_page(fig: Any, r: dict[str, Any], out_dir: Path, meta: dict[str, Any], hide_paths: bool) -> None:
    from matplotlib.image import imread

    p = r.get("probability")
    fig.text(0.06, 0.955, f"{r.get('scan_id')} — flagged", fontsize=16, weight="bold", color=FLAG_COLOUR)
    fig.text(0.94, 0.955, f"P({r.get('positive_class') or 'positive'}) = {_fmt_p(p)}", fontsize=15,
             weight="bold", color=FLAG_COLOUR, ha="right")
    shape = r.get("shape") or []
    spacing = r.get("spacing") or []
    info = [
        ("Series", _short(r.get("description"), 70) + (f" · {r.get('modality')}" if r.get("modality") else "")),
        ("Volume", (" × ".join(str(s) for s in shape) + " voxels" if shape else "?")
                   + (f", {' × '.join(f'{s:.2f}' for s in spacing)} mm" if spacing else "")
                   + (f" · study date {r.get('study_date')}" if r.get("study_date") else "")),
        ("Score", f"{r.get('aggregation') or ''}; threshold {float(meta.get('threshold', 0.5)):.2f}"),
    ]
    if not hide_paths:
        info.append(("Path", _short(r.get("path"), 95)))
        info.append(("Series UID", _short(r.get("series_uid"), 95)))
    for i, (k, v) in enumerate(info):
        fig.text(0.06, 0.925 - i * 0.018, k, fontsize=8.5, weight="bold")
        fig.text(0.18, 0.925 - i * 0.018, v, fontsize=8.5)
    y_top = 0.925 - len(info) * 0.018 - 0.01
    heat_entries = [h for h in (r.get("heatmaps") or []) if h.get("ct")]
    n = max(1, len(heat_entries))
    colorbar_source = None
    width = 0.88 / n
    size = min(width - 0.01, 0.28 * A4[1] / A4[0] * 0.5)
    img_h = size * A4[0] / A4[1]
    spacing_yx = (spacing[1], spacing[2]) if len(spacing) == 3 else (1.0, 1.0)
    aspect = float(spacing_yx[0]) / float(spacing_yx[1]) if spacing_yx[1] else 1.0
    for i, h in enumerate(heat_entries):
        x = 0.06 + i * width
        ct_file = out_dir / h["ct"]
        ct = imread(str(ct_file)) if ct_file.is_file() else None
        heat = imread(str(out_dir / h["map"])) if h.get("map") and (out_dir / h["map"]).is_file() else None
        for j in range(2):
            ax = fig.add_axes((x, y_top - (j + 1) * (img_h + 0.03), width - 0.01, img_h))
            ax.set_axis_off()
            if ct is None or (j == 1 and heat is None):
                ax.text(0.5, 0.5, "missing image" if ct is None else "no heatmap", ha="center", va="center",
                        fontsize=8, color=GREY, transform=ax.transAxes)
                continue
            ax.imshow(ct, cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="antialiased")
            if j == 1:
                level = heat.astype(np.float32)            # imread gives 0..1 for 8-bit PNGs
                shown = np.ma.masked_less(level, 0.2)
                im = ax.imshow(shown, cmap=meta.get("colormap") or "inferno", vmin=0, vmax=1, alpha=0.55,
                               aspect=aspect, interpolation="bilinear")
                colorbar_source = im
            if j == 0:
                score = h.get("score")
                ax.set_title(f"slice z = {h.get('z')}" + (f" · slice P = {score:.2f}" if score is not None else ""),
                             fontsize=8)
            else:
                ax.set_title(f"{meta.get('explainer')} heatmap", fontsize=8)
    if colorbar_source is not None:
        cax = fig.add_axes((0.955, y_top - 2 * (img_h + 0.03), 0.012, img_h))
        cb = fig.colorbar(colorbar_source, cax=cax)
        cb.ax.tick_params(labelsize=6)
        cb.set_label("heat (scan max = 1)", fontsize=6)
    if not heat_entries:
        fig.text(0.5, y_top - 0.15, "no key-slice images (explainer 'none' or no slices)", ha="center",
                 color=GREY, fontsize=9)
    y_plot = y_top - 2 * (img_h + 0.03) - 0.06
    scores = r.get("slice_scores")
    if scores:
        ax = fig.add_axes((0.1, max(0.08, y_plot - 0.2), 0.84, 0.2))
        z = np.arange(len(scores))
        s = np.asarray(scores, dtype=float)
        lung = np.asarray(r.get("lung_slices") or [1] * len(scores), dtype=bool)
        ax.fill_between(z, 0, 1, where=~lung, color="#eeeeee", step="mid", label="no lung (not aggregated)")
        ax.plot(z, s, color=OK_COLOUR, linewidth=1.0, label="slice score")
        ax.axhline(float(meta.get("threshold", 0.5)), color=FLAG_COLOUR, linestyle="--", linewidth=0.8,
                   label="threshold")
        for h in heat_entries:
            ax.axvline(h.get("z"), color="#f4a582", linewidth=0.8)
        ax.set_xlim(-0.5, len(scores) - 0.5)
        ax.set_ylim(0, 1)
        ax.set_xlabel("slice z (as loaded by LungLens)", fontsize=8)
        ax.set_ylabel(f"P({r.get('positive_class') or 'pos.'})", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right", frameon=False)
        ax.set_title("per-slice scores (orange: key slices shown above)", fontsize=8.5)
    warnings = r.get("warnings") or []
    if warnings:
        fig.text(0.06, 0.05, "Warnings: " + _short("; ".join(warnings), 160), fontsize=7, color=GREY)


def _failures_page(fig: Any, failed: Sequence[dict[str, Any]], skipped: Sequence[dict[str, Any]],
                   hide_paths: bool, more_failed: int, more_skipped: int) -> None:
    y = 0.955
    fig.text(0.06, y, "Series that could not be screened", fontsize=14, weight="bold")
    y -= 0.03
    if not failed:
        fig.text(0.06, y, "none", fontsize=9, color=GREY)
        y -= 0.025
    for r in failed:
        head = f"{r.get('scan_id')}  {'' if hide_paths else _short(r.get('path'), 90)}"
        fig.text(0.06, y, head, fontsize=8, weight="bold")
        y -= 0.016
        reason = str(r.get("reason") or "")
        if hide_paths:
            reason = reason.split(" [/")[0]
        for line in textwrap.wrap(reason, 120)[:4]:
            fig.text(0.08, y, line, fontsize=7.5, color="#333333")
            y -= 0.0145
        y -= 0.006
    if more_failed:
        fig.text(0.06, y, f"… and {more_failed} more (see results.csv)", fontsize=8, color=GREY)
        y -= 0.02
    if skipped:
        y -= 0.01
        fig.text(0.06, y, "Files ignored (not images: text files, DICOM reports, ...)", fontsize=11, weight="bold")
        y -= 0.022
        for s in skipped:
            text = Path(s["path"]).name if hide_paths else _short(s["path"], 80)
            fig.text(0.06, y, f"{text} — {_short(s.get('reason'), 60)}", fontsize=7.5, color="#333333")
            y -= 0.0145
        if more_skipped:
            fig.text(0.06, y, f"… and {more_skipped} more (table 'skipped' in results.sqlite)", fontsize=8,
                     color=GREY)


def _model_card_page(fig: Any, card: str) -> None:
    fig.text(0.06, 0.955, "Model card", fontsize=14, weight="bold")
    y = 0.925
    for raw in card.splitlines():
        line = raw.rstrip()
        if line.startswith("# "):
            continue
        bold = line.startswith("#")
        text = line.lstrip("#").strip().replace("**", "").replace("`", "")
        for part in (textwrap.wrap(text, 115) or [""]):
            if y < 0.05:
                return
            fig.text(0.06, y, part, fontsize=9 if bold else 7.5, weight="bold" if bold else "normal")
            y -= 0.019 if bold else 0.0145


# ---------------------------------------------------------------------------------------------- entry point
def write_report(out_dir: str | Path, *, hide_paths: bool = False, summary: Any = None,
                 max_scan_pages: int = 200, max_failed_listed: int = 30) -> Path:
    """Build ``out_dir/report.pdf`` from the results database (atomically: a temp file, then rename).

    ``hide_paths`` leaves file paths and UIDs out (pseudonymous scan ids only) for sharing.  At most
    ``max_scan_pages`` flagged scans get a page (the most suspicious first; the table lists them all).
    """
    out_dir = Path(out_dir)
    with ResultsStore(out_dir, create=False) as store:
        meta: dict[str, Any] = store.meta()
        rows = store.rows()
        skipped = store.skipped()
    try:
        meta["manifest"] = json.loads(meta.get("model_manifest") or "{}")
    except json.JSONDecodeError:
        meta["manifest"] = {}
    for rank, r in enumerate(rows, start=1):
        r["rank"] = rank
    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") != "ok"]
    flagged = [r for r in ok if r.get("flagged")]
    counts = {"total": len(rows) if summary is None else max(len(rows), int(getattr(summary, "total", 0))),
              "ok": len(ok), "failed": len(failed), "flagged": len(flagged), "skipped": len(skipped),
              "incomplete": bool(summary is not None and not getattr(summary, "complete", True))}

    doc = _Doc()
    first, rest = rows[:ROWS_FIRST_PAGE], rows[ROWS_FIRST_PAGE:]

    def summary_page(fig: Any) -> None:
        y = _summary_header(fig, meta, counts, hide_paths, out_dir)
        if rows:
            _table(fig, first, y)
        else:
            fig.text(0.06, y, "No series were found under the inputs.", fontsize=9, color=GREY)

    doc.add(summary_page)
    for start in range(0, len(rest), ROWS_PER_PAGE):
        chunk = rest[start:start + ROWS_PER_PAGE]

        def table_page(fig: Any, chunk: Sequence[dict[str, Any]] = chunk) -> None:
            fig.text(0.06, 0.955, "All series, most suspicious first (continued)", fontsize=11, weight="bold")
            _table(fig, chunk, 0.925)

        doc.add(table_page)
    for r in flagged[:max_scan_pages]:
        doc.add(lambda fig, r=r: _scan_page(fig, r, out_dir, meta, hide_paths))
    if failed or skipped:
        doc.add(lambda fig: _failures_page(fig, failed[:max_failed_listed], skipped[:25], hide_paths,
                                           max(0, len(failed) - max_failed_listed), max(0, len(skipped) - 25)))
    card = _model_card(meta["manifest"])
    doc.add(lambda fig: _model_card_page(fig, card))

    target = out_dir / REPORT_NAME
    tmp = out_dir / f".{REPORT_NAME}.{os.getpid()}.tmp"
    doc.save(tmp, {"Title": "LungLens batch screening report", "Subject": "Research use only - not a diagnosis",
                   "Creator": "LungLens"})
    tmp.replace(target)
    return target


def _model_card(manifest: dict[str, Any]) -> str:
    if not manifest:
        return "# Model card\n\nThe weights' manifest was not recorded."
    from engine.weights import render_model_card

    return render_model_card(manifest)
