"""``lunglens-engine info PATH``: discover the series under a path and print their headers and warnings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="a file, folder or DICOMDIR")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--load", action="store_true", help="also load each series (geometry, HU range, warnings)")
    parser.add_argument("--skipped", action="store_true", help="list the skipped files and why")


def _describe(info, load: bool) -> dict:
    from engine.io import VolumeError, load_volume

    d = {"label": info.label, "kind": info.kind, "uid": info.uid, "study_uid": info.study_uid,
         "modality": info.modality, "description": info.description, "n_slices": info.n_slices,
         "shape": list(info.shape) if info.shape else None, "n_files": len(info.paths),
         "first_file": str(info.paths[0]), "warnings": list(info.warnings)}
    if load:
        try:
            vol = load_volume(info)
        except VolumeError as exc:
            d["error"] = f"{type(exc).__name__}: {exc}"
            return d
        a = vol.array
        d.update({"shape": list(vol.shape), "spacing_mm": [round(s, 4) for s in vol.spacing],
                  "origin_mm": [round(o, 3) for o in vol.origin], "direction": [round(c, 4) for c in vol.direction],
                  "is_hu": vol.is_hu, "dtype": str(a.dtype), "min": float(a.min()), "max": float(a.max()),
                  "meta": vol.meta, "warnings": list(dict.fromkeys([*info.warnings, *vol.warnings]))})
    return d


def run(args: argparse.Namespace) -> int:
    from engine.io import VolumeError, discover

    try:
        found = discover(args.path)
    except VolumeError as exc:
        print(f"lunglens-engine info: {type(exc).__name__}: {exc}")
        return 1
    series = [_describe(s, args.load) for s in found]
    report = {"path": str(args.path), "series": series, "skipped": found.skipped, "warnings": found.warnings}
    if args.skipped:
        report["skipped_files"] = [{"path": str(p), "reason": r} for p, r in found.skipped_files]
    if args.json:
        print(json.dumps(report, indent=1, default=str))
        return 0 if series else 1
    print(f"{args.path}: {len(series)} series, {found.skipped} file(s) skipped")
    for i, s in enumerate(series, 1):
        print(f"[{i}] {s['label']}")
        print(f"    kind={s['kind']} files={s['n_files']} shape={s['shape']} uid={s['uid']}")
        for key in ("spacing_mm", "origin_mm", "is_hu", "dtype", "min", "max"):
            if key in s:
                print(f"    {key}={s[key]}")
        if s.get("meta"):
            print("    " + ", ".join(f"{k}={v}" for k, v in s["meta"].items()))
        if "error" in s:
            print(f"    ERROR {s['error']}")
        for w in s["warnings"]:
            print(f"    warning: {w}")
    for w in found.warnings:
        print(f"warning: {w}")
    if args.skipped:
        for p, r in found.skipped_files:
            print(f"skipped {p}: {r}")
    return 0 if series else 1
