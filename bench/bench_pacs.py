"""PACS retrieve benchmark: a phantom CT series through a real Orthanc by WADO-RS, C-GET and C-MOVE.

Starts Orthanc on loopback ports with a temporary storage (the test harness in tests/engine/pacs, needs the
Debian packages ``orthanc`` + ``orthanc-dicomweb``), uploads a phantom series (default 64 slices of 512x512,
Explicit VR LE, ~32 MB), then times ``retrieve_series(..., refresh=True)`` for each method (median of
``--repeats``), plus QIDO/C-FIND study searches and a C-STORE/STOW-RS send of the series.

    python -m bench.bench_pacs [--slices 64] [--size 512] [--repeats 3]

Prints one JSON object (seconds, MB/s, instances/s).  No target in the issue; this documents throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    repo = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(repo))
    from engine.pacs import StudyQuery, open_client
    from engine.phantom import make_phantom, write_dicom_series
    from tests.engine.pacs.orthanc_server import OrthancServer, orthanc_binary

    if orthanc_binary() is None:
        print(json.dumps({"error": "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"}))
        return 1
    with tempfile.TemporaryDirectory(prefix="lunglens-bench-pacs-") as tmp:
        tmp = Path(tmp)
        os.environ["LUNGLENS_CACHE_DIR"] = str(tmp / "cache")
        phantom = make_phantom(shape=(args.slices, args.size, args.size), spacing=(2.5, 0.7, 0.7), seed=1,
                               lesions=3)
        paths = write_dicom_series(phantom.volume, tmp / "series", uid_seed="bench-pacs")
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        import pydicom

        head = pydicom.dcmread(paths[0], stop_before_pixels=True)
        study, series = str(head.StudyInstanceUID), str(head.SeriesInstanceUID)
        result: dict = {"slices": args.slices, "size": args.size, "series_mb": round(megabytes, 1),
                        "python": platform.python_version(), "cpus": os.cpu_count(), "retrieve": {},
                        "search_s": {}, "send_s": {}}
        with OrthancServer(tmp / "orthanc") as orthanc:
            orthanc.upload(paths)
            servers = {"wado-rs": orthanc.dicomweb_server(), "c-get": orthanc.dimse_server(retrieve="get"),
                       "c-move": orthanc.dimse_server(retrieve="move")}
            for name, server in servers.items():
                client = open_client(server)
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    got = client.retrieve_series(study, series, refresh=True)
                    times.append(time.perf_counter() - start)
                    assert got.n_instances == args.slices
                median = statistics.median(times)
                result["retrieve"][name] = {"median_s": round(median, 3), "mb_per_s": round(megabytes / median, 1),
                                            "instances_per_s": round(args.slices / median, 1)}
            for name in ("wado-rs", "c-get"):
                client = open_client(servers[name])
                start = time.perf_counter()
                client.find_studies(StudyQuery(patient_name="LungLens"))
                result["search_s"]["qido-rs" if name == "wado-rs" else "c-find"] = round(
                    time.perf_counter() - start, 3)
                start = time.perf_counter()
                client.send(paths)
                result["send_s"]["stow-rs" if name == "wado-rs" else "c-store"] = round(
                    time.perf_counter() - start, 3)
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
