"""Turn a finished training run into shipped default weights (``resources/weights/<model>/``).

    python -m engine.train.ship --run runs/p0c --dest resources/weights/lightsqueeze_proposed \
        [--cv runs/cv-p0c/cv_summary.json] [--hpo runs/hpo/hpo_summary.json] [--localize loc.json]

Copies ``model.safetensors`` (bytes unchanged, so its sha256 stays valid), then rewrites the manifest with the
data provenance, licence terms, known limits, validation metrics with intervals, the cross-validation summary
(mean ± 95 % CI), the HPO study and localisation results, and renders ``MODEL_CARD.md``.  Nothing here reads
``/work/shared`` at run time of the app: provenance is text.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

DATA_PROVENANCE = {
    "covid-ct-2d": {
        "name": "UCSD COVID-CT (Zhao et al., arXiv:2003.13865), official train/val splits",
        "source": "UCSD-AI4H/COVID-CT via mirror Coronavirus-Visualization-Team/CVT_COVID-CT-CNN@1e940738b72b",
        "licence": "no licence file; 'All copyrights of the data belong to the authors and publishers of these "
                   "papers' — research / internal use only, not redistributed",
        "nature": "8-bit paper-figure images (pre-windowed, no HU), 251 COVID / 292 NonCOVID; patient ids from "
                  "the UCSD metadata; UCSD val split (60 COVID / 58 NonCOVID, patient-disjoint) used for "
                  "selection",
    },
    "mosmed-slices-2d": {
        "name": "MosMedData COVID19_1110, one 8-bit slice per study (class-balanced 203/203)",
        "source": "Coronavirus-Visualization-Team/CVT_COVID-CT-CNN@caa067e11da8 (third-party slice export)",
        "licence": "CC BY-NC-ND 3.0 (MosMedData) — non-commercial; derivative slices, internal use only",
        "nature": "one slice per study, position unknown (label noise in CT-1)",
    },
}

LICENCE = ("Research use only. The weights are derived from datasets whose terms restrict use to non-commercial "
           "research (UCSD COVID-CT: copyright of the source papers' publishers; MosMedData: CC BY-NC-ND 3.0). "
           "LungLens code is Apache-2.0; these weights are not.")

LIMITS = (
    "Research software, not a medical device: NOT validated for clinical use and not cleared or approved for "
    "diagnosis. Trained on 8-bit, pre-windowed paper-figure images (UCSD COVID-CT), whose label is 'image comes "
    "from a COVID paper'; accuracy on this data says little about real scanner data. Heterogeneous sources, "
    "annotations (arrows, letters) and differing windows are known shortcut risks. Not trained on HU volumes: "
    "for DICOM/NIfTI input the lung window maps HU to the same 8-bit-like range, which is an approximation. "
    "Metrics on the UCSD validation split are optimistic (that split selected the epoch); the patient-wise "
    "cross-validation figures are the less biased estimate. Never use as the sole basis of a clinical decision."
)


def _cv_block(cv: dict[str, Any]) -> dict[str, Any]:
    keep = ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "balanced_accuracy",
            "p2_mean_accuracy_eq1")
    out = {"folds": cv.get("folds"), "ci_formula": cv.get("ci_formula"), "data": cv.get("data"),
           "input_size": cv.get("input_size")}
    for k in keep:
        if k in cv:
            c = cv[k]
            out[k] = {"mean": c["mean"], "ci95": [c["ci_low"], c["ci_high"]], "sd": c["sd"]}
    if cv.get("pooled_out_of_fold"):
        p = cv["pooled_out_of_fold"][0]
        out["pooled_out_of_fold"] = {"accuracy": p["accuracy"], "auc": p["auc"], "n": p["n"]}
    return out


def _hpo_block(h: dict[str, Any]) -> dict[str, Any]:
    return {k: h.get(k) for k in ("objective", "sampler", "pruner", "search_space", "n_trials", "n_complete",
                                  "n_pruned", "best", "input_size")}


def _fmt_ci(v: float, ci) -> str:
    if ci and ci[0] is not None and ci[0] == ci[0]:
        return f"{v:.3f} ({ci[0]:.3f}–{ci[1]:.3f})"
    return f"{v:.3f}"


def results_section(manifest: dict[str, Any]) -> str:
    m = manifest.get("metrics", {})
    lines = ["## Results at a glance", ""]
    val = m.get("validation")
    if val:
        ci = val.get("ci95", {})
        lines += [f"UCSD COVID-CT validation split (n = {val['n']}; selected the epoch, so optimistic):", "",
                  "| metric | value (95 % CI) |", "|---|---|"]
        for k in ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "balanced_accuracy"):
            lines.append(f"| {k} | {_fmt_ci(val[k], ci.get(k))} |")
        lines += ["", f"Intervals: {ci.get('formula', '')}.", ""]
    cv = m.get("cross_validation")
    if cv:
        lines += [f"Patient-wise {cv.get('folds')}-fold cross-validation on all of covid-ct-2d "
                  f"(mean over folds, 95 % CI = {cv.get('ci_formula')}):", "",
                  "| metric | mean (95 % CI) | SD |", "|---|---|---|"]
        for k in ("accuracy", "sensitivity", "specificity", "precision", "f1", "auc", "balanced_accuracy"):
            if k in cv:
                lines.append(f"| {k} | {_fmt_ci(cv[k]['mean'], cv[k]['ci95'])} | {cv[k]['sd']:.3f} |")
        lines.append("")
    loc = m.get("localization")
    if loc:
        lines += [f"Heatmap localisation on covid-lesion-masks-2d (n = {loc.get('n')}, chance hit rate "
                  f"{loc.get('chance_hit_rate', 0):.3f}):", "", "| explainer | pointing game | energy in mask |",
                  "|---|---|---|"]
        for name, r in loc.get("methods", {}).items():
            if "pointing_game" in r:
                pg, en = r["pointing_game"], r["energy_in_mask"]
                lines.append(f"| {name} | {_fmt_ci(pg['mean'], [pg['ci_low'], pg['ci_high']])} | "
                             f"{_fmt_ci(en['mean'], [en['ci_low'], en['ci_high']])} |")
        lines.append("")
    t = manifest.get("training")
    if t:
        lines += ["Training: " + ", ".join(f"{k} {v}" for k, v in t.items()), ""]
    return "\n".join(lines) + "\n"


def ship(run: str | Path, dest: str | Path, *, cv: str | Path | None = None, hpo: str | Path | None = None,
         localize: str | Path | None = None, datasets: tuple[str, ...] = ("covid-ct-2d",), notes: str = "") -> dict:
    from engine.weights import CARD_NAME, MANIFEST_NAME, WEIGHTS_NAME, load_weights, render_model_card

    run, dest = Path(run), Path(dest)
    src = run / "weights"
    manifest = json.loads((src / MANIFEST_NAME).read_text())
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / WEIGHTS_NAME, dest / WEIGHTS_NAME)
    manifest["data"] = {"datasets": {d: DATA_PROVENANCE[d] for d in datasets if d in DATA_PROVENANCE},
                        "split_used": (summary.get("data") or {}).get("selection"),
                        "train": (summary.get("data") or {}).get("train"),
                        "val": (summary.get("data") or {}).get("val")}
    manifest["licence"] = LICENCE
    manifest["limits"] = LIMITS
    manifest["training"] = {
        "recipe": (summary.get("recipe") or {}).get("recipe"),
        "epochs_run": summary.get("epochs_run"), "best_epoch": summary.get("best_epoch"),
        "minutes": round(summary.get("train_seconds", 0) / 60.0, 1), "threads": summary.get("threads"),
        "input_size": summary.get("input_size"),
    }
    manifest["training_config"] = (summary.get("recipe") or {}).get("config")
    metrics = dict(manifest.get("metrics") or {})
    if cv:
        metrics["cross_validation"] = _cv_block(json.loads(Path(cv).read_text()))
    if hpo:
        metrics["hpo"] = _hpo_block(json.loads(Path(hpo).read_text()))
    if localize:
        loc = json.loads(Path(localize).read_text())
        metrics["localization"] = {k: loc.get(k) for k in ("n", "tolerance_px", "chance_hit_rate",
                                                            "uniform_energy", "predicted_covid_rate", "methods")}
    manifest["metrics"] = metrics
    if notes:
        manifest["notes"] = notes
    (dest / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    card = render_model_card(manifest)
    head, _, rest = card.partition("## Intended use and limits")
    (dest / CARD_NAME).write_text(head + results_section(manifest) + "\n## Intended use and limits" + rest)
    load_weights(dest)  # verifies sha256 and that the model builds from the manifest
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.train.ship", description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--dest", required=True, type=Path)
    p.add_argument("--cv", type=Path)
    p.add_argument("--hpo", type=Path)
    p.add_argument("--localize", type=Path)
    p.add_argument("--datasets", default="covid-ct-2d", help="comma-separated dataset keys used for training")
    p.add_argument("--notes", default="")
    a = p.parse_args(argv)
    m = ship(a.run, a.dest, cv=a.cv, hpo=a.hpo, localize=a.localize,
             datasets=tuple(d.strip() for d in a.datasets.split(",")), notes=a.notes)
    print(json.dumps({"shipped": str(a.dest), "sha256": m["sha256"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
