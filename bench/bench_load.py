"""Load-time benchmark: ``engine.io.load_volume`` vs SimpleITK's ImageSeriesReader on phantom DICOM series.

Writes a phantom chest (default 300 slices of 512x512) into a temporary folder in each transfer syntax
(uncompressed explicit VR LE, JPEG-LS lossless, JPEG 2000 lossless), then times, alternately and with a warm page
cache, (a) ``load_volume(folder)`` — header scan, sorting, decoding, HU — and (b) SimpleITK: GDCM series file
names + ``ImageSeriesReader.Execute``.  Wall and CPU seconds (median of the repeats) are reported; on a machine
shared with other jobs (see the load averages in the output) compare the two in the same run only.  Both produce the same HU array (checked).  Peak Python/numpy memory during
``load_volume`` is measured with tracemalloc and reported relative to the volume's size.

    python -m bench.bench_load [--slices 300] [--size 512] [--repeats 3] [--syntaxes uncompressed,jpegls,j2k]

Prints one JSON object.  Targets (issue 2): uncompressed <= 1.0 s and <= SimpleITK; compressed <= SimpleITK;
memory <= 2.5x the volume.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

SYNTAXES = {
    "uncompressed": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "jpegls": "1.2.840.10008.1.2.4.80",
    "j2k": "1.2.840.10008.1.2.4.90",
    "rle": "1.2.840.10008.1.2.5",
}


def _sitk_load(folder: Path):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(folder))
    reader.SetFileNames(names)
    img = reader.Execute()
    return sitk.GetArrayFromImage(img)


def _ours(folder: Path):
    from engine.io import load_volume

    from engine.io.discover import clear_header_cache

    clear_header_cache()         # no header cache between runs: every run parses every file
    return load_volume(folder)


def _time(fn, *a):
    gc.collect()
    c = time.process_time()
    t = time.perf_counter()
    out = fn(*a)
    _time.cpu = time.process_time() - c      # CPU seconds of this process (all threads)
    return time.perf_counter() - t, out


def _write_series(volume, folder: Path, ts: str) -> float:
    from engine.phantom import write_dicom_series
    t = time.perf_counter()
    write_dicom_series(volume, folder, transfer_syntax=ts, uid_seed="bench")
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--syntaxes", default="uncompressed,jpegls,j2k")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the generated series here and reuse them (default: a temp dir)")
    ap.add_argument("--folders", type=Path, nargs="*", default=[],
                    help="also time existing DICOM series folders (e.g. a real scan), read-only")
    args = ap.parse_args(argv)

    from engine.phantom import make_phantom
    import SimpleITK as sitk

    t = time.perf_counter()
    ph = make_phantom((args.slices, args.size, args.size), (1.0, 0.7 * 512 / args.size, 0.7 * 512 / args.size),
                      seed=1, lesions=6)
    t_phantom = time.perf_counter() - t
    vol_bytes = ph.volume.array.size * 4
    result = {
        "bench": "load_volume vs SimpleITK ImageSeriesReader",
        "shape": list(ph.volume.shape), "volume_mb_float32": round(vol_bytes / 2**20, 1),
        "cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "python": sys.version.split()[0], "platform": platform.platform(),
        "simpleitk": sitk.Version_VersionString(), "sitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
        "phantom_s": round(t_phantom, 2), "repeats": args.repeats, "results": {},
    }
    tmp_ctx = tempfile.TemporaryDirectory(prefix="lunglens-bench-") if args.workdir is None else None
    root = Path(tmp_ctx.name) if tmp_ctx else args.workdir
    try:
        for name in [s.strip() for s in args.syntaxes.split(",") if s.strip()]:
            ts = SYNTAXES[name]
            folder = root / name
            entry: dict = {"transfer_syntax": ts}
            try:
                if not folder.exists():
                    entry["write_s"] = round(_write_series(ph.volume, folder, ts), 2)
            except Exception as exc:  # e.g. an encoder missing
                entry["error"] = f"cannot encode: {exc}"
                result["results"][name] = entry
                continue
            entry["mb_on_disk"] = round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20, 1)
            # warm the page cache and check both readers agree with the phantom
            _, ours = _time(_ours, folder)
            _, ref = _time(_sitk_load, folder)
            entry["equal_to_phantom"] = bool(np.array_equal(ours.array, ph.volume.array))
            entry["equal_to_sitk"] = bool(np.array_equal(ours.array, ref.astype(np.float32)))
            del ours, ref
            t_ours, t_sitk, c_ours, c_sitk = [], [], [], []
            for _ in range(args.repeats):
                dt, v = _time(_ours, folder)
                t_ours.append(dt)
                c_ours.append(_time.cpu)
                del v
                dt, v = _time(_sitk_load, folder)
                t_sitk.append(dt)
                c_sitk.append(_time.cpu)
                del v
            gc.collect()
            tracemalloc.start()
            v = _ours(folder)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            del v
            entry.update({
                "ours_s": round(statistics.median(t_ours), 3), "sitk_s": round(statistics.median(t_sitk), 3),
                "ours_all_s": [round(x, 3) for x in t_ours], "sitk_all_s": [round(x, 3) for x in t_sitk],
                "ours_over_sitk": round(statistics.median(t_ours) / statistics.median(t_sitk), 3),
                "ours_cpu_s": round(statistics.median(c_ours), 3), "sitk_cpu_s": round(statistics.median(c_sitk), 3),
                "peak_mem_over_volume": round(peak / vol_bytes, 3),
            })
            result["results"][name] = entry
            print(json.dumps({name: entry}), file=sys.stderr, flush=True)
        for folder in args.folders:
            entry = {"folder": str(folder)}
            _, ours = _time(_ours, folder)
            _, ref = _time(_sitk_load, folder)
            entry["shape"] = list(ours.shape)
            entry["transfer_syntax"] = ours.meta.get("TransferSyntaxUID")
            entry["equal_to_sitk"] = bool(ours.array.shape == ref.shape and
                                          np.array_equal(ours.array, ref.astype(np.float32)))
            del ours, ref
            t_ours, t_sitk, c_ours, c_sitk = [], [], [], []
            for _ in range(args.repeats):
                dt, v = _time(_ours, folder)
                t_ours.append(dt)
                c_ours.append(_time.cpu)
                del v
                dt, v = _time(_sitk_load, folder)
                t_sitk.append(dt)
                c_sitk.append(_time.cpu)
                del v
            entry.update({"ours_s": round(statistics.median(t_ours), 3), "sitk_s": round(statistics.median(t_sitk), 3),
                          "ours_cpu_s": round(statistics.median(c_ours), 3),
                          "sitk_cpu_s": round(statistics.median(c_sitk), 3),
                          "ours_over_sitk": round(statistics.median(t_ours) / statistics.median(t_sitk), 3)})
            result["results"][f"folder:{folder.name}"] = entry
            print(json.dumps({folder.name: entry}), file=sys.stderr, flush=True)
    finally:
        if tmp_ctx:
            tmp_ctx.cleanup()
    unc = result["results"].get("uncompressed", {})
    result["targets"] = {
        "uncompressed_le_1s": unc.get("ours_s", 99) <= 1.0 if "ours_s" in unc else None,
        "not_slower_than_sitk": {k: r["ours_s"] <= r["sitk_s"] for k, r in result["results"].items() if "ours_s" in r},
        "memory_le_2.5x": all(r.get("peak_mem_over_volume", 0) <= 2.5 for r in result["results"].values()),
        "all_equal": all(r.get("equal_to_sitk", True) and r.get("equal_to_phantom", True)
                         for r in result["results"].values()),
    }
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
