"""``make bench``: run every ``bench/bench_*.py`` script and print ONE JSON document with all their results.

    python -m bench.run_all [--only NAME ...] [--skip NAME ...] [--timeout S] [--list] [--out FILE]

Each script runs in its own process (``python -m bench.<name>``, so one script's threads, caches or crash do
not disturb the next) and must print one JSON object on stdout; its stderr is kept (tail) for diagnosis.
Scripts run one after another — never in parallel, they would time each other.  ``$LUNGLENS_BENCH_ARGS_<NAME>``
(e.g. ``LUNGLENS_BENCH_ARGS_BENCH_MODELS="--quick"``) passes extra arguments to one script.
Exit status 1 if any script failed or printed no JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def discover(folder: Path = HERE) -> list[str]:
    return sorted(p.stem for p in folder.glob("bench_*.py") if p.is_file())


def parse_json_output(stdout: str) -> Any:
    """The script's JSON document: the whole stdout, or else the last line/block that parses."""
    text = stdout.strip()
    if not text:
        raise ValueError("no output")
    try:
        return json.loads(text)
    except ValueError:
        pass
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):     # a document that starts on line i and runs to the end
        if lines[i].lstrip().startswith(("{", "[")):
            try:
                return json.loads("\n".join(lines[i:]))
            except ValueError:
                continue
    raise ValueError("stdout holds no JSON document")


def run_script(name: str, folder: Path, timeout: float, extra: list[str]) -> dict[str, Any]:
    package = folder.name
    cmd = [sys.executable, "-m", f"{package}.{name}", *extra]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=folder.parent, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(folder.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    except subprocess.TimeoutExpired as exc:
        return {"rc": None, "seconds": round(time.perf_counter() - t0, 1), "error": f"timed out after {timeout} s",
                "stderr_tail": _tail(exc.stderr)}
    entry: dict[str, Any] = {"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 1),
                             "command": " ".join(shlex.quote(c) for c in cmd[1:])}
    try:
        entry["result"] = parse_json_output(proc.stdout)
    except ValueError as exc:
        entry["error"] = f"{exc}; stdout tail: {_tail(proc.stdout, 400)}"
    if proc.returncode != 0 or "error" in entry:
        entry["stderr_tail"] = _tail(proc.stderr)
    return entry


def _tail(text: str | bytes | None, n: int = 2000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return text[-n:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts (bench_ prefix optional)")
    parser.add_argument("--skip", nargs="+", default=[], metavar="NAME", help="scripts to leave out")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("LUNGLENS_BENCH_TIMEOUT", 3600)),
                        help="seconds per script (default 3600 or $LUNGLENS_BENCH_TIMEOUT)")
    parser.add_argument("--dir", type=Path, default=HERE, help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true", help="list the scripts and exit")
    parser.add_argument("--out", type=Path, help="also write the document to this file")
    args = parser.parse_args(argv)

    def norm(n: str) -> str:
        return n if n.startswith("bench_") else f"bench_{n}"

    names = discover(args.dir)
    if args.only:
        wanted = [norm(n) for n in args.only]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            print(f"unknown bench script(s) {unknown}; have {names}", file=sys.stderr)
            return 2
        names = [n for n in names if n in wanted]
    skip = {norm(n) for n in args.skip}
    names = [n for n in names if n not in skip]
    if args.list:
        print("\n".join(names))
        return 0

    started = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    doc: dict[str, Any] = {"started": started, "python": platform.python_version(), "platform": platform.platform(),
                           "cpus": os.cpu_count(), "scripts": {}}
    try:
        doc["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    failed = 0
    for name in names:
        print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
        extra = shlex.split(os.environ.get(f"LUNGLENS_BENCH_ARGS_{name.upper()}", ""))
        entry = run_script(name, args.dir, args.timeout, extra)
        doc["scripts"][name] = entry
        ok = entry.get("rc") == 0 and "result" in entry
        failed += not ok
        print(f"[run_all] {name}: {'ok' if ok else 'FAILED'} in {entry['seconds']} s", file=sys.stderr, flush=True)
    try:
        doc["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    text = json.dumps(doc, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
