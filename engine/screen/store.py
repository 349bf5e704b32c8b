"""``results.sqlite`` of a screening job: one row per series, written so a SIGKILL can never corrupt or duplicate.

Why SQLite: a single file the radiologist can copy, open in any tool, and that survives a crash.  The database
runs in WAL mode with ``synchronous=FULL``; every finished series is one transaction (an ``INSERT ... ON CONFLICT
DO UPDATE`` keyed by ``series_key``), so after a kill at any moment the file holds exactly the series that were
committed, once each, and a rerun screens only the rest.  Only the job's coordinating process writes to it
(worker processes and Dask workers return rows; they never open the database).

Tables
------
``meta``      key/value: model, weights sha256, explainer, threshold, key slices, created, format version
``results``   one row per series (see ``COLUMNS``); ``status`` is ``ok`` or ``failed`` (+ ``reason``)
``skipped``   files discovery ignored because they are not images (text files, DICOM reports, ...)
``runs``      one row per invocation (argv, inputs, workers/scheduler, start/end, outcome) — provenance

Patient safety: no names, patient IDs or birth dates are ever read (``engine.io`` keeps only ``SAFE_META_KEYS``);
rows carry pseudonymous ``scan_id`` / ``study_id`` (short hashes) next to the series UID and path needed to
open the scan again.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

DB_NAME = "results.sqlite"
CSV_NAME = "results.csv"
REPORT_NAME = "report.pdf"
HEATMAP_DIR = "heatmaps"
FORMAT_VERSION = 1

# (column, SQL type) in table order; JSON-valued columns are marked in JSON_COLUMNS.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("series_key", "TEXT PRIMARY KEY"),     # stable identity of the series within this job (kind+UID+files)
    ("scan_id", "TEXT NOT NULL"),           # pseudonym shown in reports, e.g. S-3f2a9c1b
    ("study_id", "TEXT"),                   # pseudonym of the study UID (groups series of one study)
    ("status", "TEXT NOT NULL CHECK (status IN ('ok', 'failed'))"),
    ("reason", "TEXT"),                     # why it failed (what, which file, what to do)
    ("error_type", "TEXT"),
    ("kind", "TEXT"),                       # dicom | nifti | itk | image2d | file
    ("series_uid", "TEXT"),
    ("study_uid", "TEXT"),
    ("path", "TEXT"),                       # what to open: the series folder (DICOM) or the file
    ("first_file", "TEXT"),
    ("input_root", "TEXT"),                 # the command-line input it was found under
    ("n_files", "INTEGER"),
    ("n_slices", "INTEGER"),
    ("modality", "TEXT"),
    ("description", "TEXT"),
    ("study_date", "TEXT"),
    ("shape", "TEXT"),                      # JSON [z, y, x]
    ("spacing", "TEXT"),                    # JSON [z, y, x] mm
    ("is_hu", "INTEGER"),
    ("model", "TEXT"),
    ("weights_sha256", "TEXT"),
    ("backend", "TEXT"),
    ("explainer", "TEXT"),
    ("probability", "REAL"),                # P(positive class) for the scan
    ("flagged", "INTEGER"),                 # probability >= threshold
    ("positive_class", "TEXT"),
    ("aggregation", "TEXT"),
    ("top_slice", "INTEGER"),               # z index (engine.io order) of the most suspicious slice
    ("top_slices", "TEXT"),                 # JSON list, most suspicious first
    ("top_scores", "TEXT"),                 # JSON list, their slice scores
    ("slice_scores", "TEXT"),               # JSON list, P(positive) per slice (2-D models)
    ("lung_slices", "TEXT"),                # JSON list of 0/1: slices that entered the aggregation
    ("heatmaps", "TEXT"),                   # JSON list of {"z", "score", "ct", "map", "overlay"}: PNGs under out dir
    ("warnings", "TEXT"),                   # JSON list
    ("t_load", "REAL"),
    ("t_preprocess", "REAL"),
    ("t_inference", "REAL"),
    ("t_explain", "REAL"),
    ("t_total", "REAL"),
    ("worker", "TEXT"),                     # host:pid that screened it
    ("run_id", "INTEGER"),
    ("finished_at", "TEXT"),
)
COLUMN_NAMES = tuple(c for c, _ in COLUMNS)
JSON_COLUMNS = frozenset({"shape", "spacing", "top_slices", "top_scores", "slice_scores", "lung_slices",
                          "heatmaps", "warnings"})

# CSV: what a reader wants in a spreadsheet (no per-slice arrays), most suspicious first.
CSV_COLUMNS = ("scan_id", "status", "probability", "flagged", "top_slice", "top_slices", "description",
               "modality", "kind", "n_slices", "path", "series_uid", "study_id", "study_date", "reason", "model",
               "weights_sha256", "explainer", "backend", "aggregation", "t_total", "finished_at")


class StoreError(RuntimeError):
    """The results database cannot be used for this job (another model's results, a newer format, ...)."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _encode(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and value is not None and not isinstance(value, str):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return int(value)
    return value


def _decode(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for c in JSON_COLUMNS:
        v = out.get(c)
        if isinstance(v, str) and v:
            try:
                out[c] = json.loads(v)
            except json.JSONDecodeError:
                pass
    if out.get("flagged") is not None:
        out["flagged"] = bool(out["flagged"])
    if out.get("is_hu") is not None:
        out["is_hu"] = bool(out["is_hu"])
    return out


class ResultsStore:
    """The job's SQLite file.  Open with ``ResultsStore(out_dir)``; use from one thread (the coordinator)."""

    def __init__(self, out_dir: str | Path, *, create: bool = True):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / DB_NAME
        if not create and not self.path.is_file():
            raise StoreError(f"no screening results here (missing {DB_NAME}); run lunglens-screen with --out "
                             f"pointing at this folder first [{self.out_dir}]")
        if create:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: explicit BEGIN/COMMIT, so a transaction is exactly one series
        self.conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA busy_timeout=30000")
            if create:
                self._create()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise StoreError(f"{DB_NAME} is not a readable SQLite database ({exc}); move it away or choose "
                             f"another --out [{self.path}]") from exc
        version = self.get_meta("format_version")
        if version is not None and int(version) > FORMAT_VERSION:
            raise StoreError(f"{DB_NAME} was written by a newer LungLens (format {version}); update LungLens "
                             f"or choose another --out [{self.path}]")

    def _create(self) -> None:
        cols = ",\n  ".join(f"{c} {t}" for c, t in COLUMNS)
        with self.transaction():
            self.conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self.conn.execute(f"CREATE TABLE IF NOT EXISTS results (\n  {cols}\n)")
            self.conn.execute("CREATE INDEX IF NOT EXISTS results_probability ON results (probability DESC)")
            self.conn.execute("CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, reason TEXT, "
                              "input_root TEXT, run_id INTEGER)")
            self.conn.execute("CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                              "started TEXT, finished TEXT, outcome TEXT, argv TEXT, inputs TEXT, workers INTEGER, "
                              "scheduler TEXT, host TEXT, n_pending INTEGER, n_done INTEGER, n_failed INTEGER)")
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('format_version', ?)", (str(FORMAT_VERSION),))
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (_now(),))

    # ------------------------------------------------------------------ transactions
    class _Tx:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, exc, tb) -> None:
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")

    def transaction(self) -> "ResultsStore._Tx":
        return ResultsStore._Tx(self.conn)

    def close(self) -> None:
        try:
            self.conn.close()
        except sqlite3.Error:
            pass

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ meta
    def get_meta(self, key: str) -> str | None:
        try:
            row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.OperationalError:
            return None
        return None if row is None else row[0]

    def meta(self) -> dict[str, str]:
        return {k: v for k, v in self.conn.execute("SELECT key, value FROM meta")}

    def bind_job(self, identity: Mapping[str, Any]) -> None:
        """Record what produced these results (model, weights sha256, explainer, ...) or, if the folder already
        holds results, check they came from the same settings: rows of two models never mix in one table."""
        current = self.meta()
        clashes = [(k, current[k], str(v)) for k, v in identity.items()
                   if k in current and current[k] != str(v)]
        if clashes and self.count() > 0:
            what = "; ".join(f"{k}: folder has {a!r}, this run asks for {b!r}" for k, a, b in clashes)
            raise StoreError(f"the output folder already holds results screened with other settings ({what}). "
                             f"Choose another --out, or rerun with the original settings to resume "
                             f"[{self.out_dir}]")
        with self.transaction():
            for k, v in identity.items():
                self.conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                                  "excluded.value", (k, str(v)))

    def set_meta(self, key: str, value: str) -> None:
        """Informational metadata (not checked on resume), e.g. the weights manifest for the report."""
        with self.transaction():
            self.conn.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                              "excluded.value", (key, str(value)))

    # ------------------------------------------------------------------ runs
    def start_run(self, *, argv: Iterable[str], inputs: Iterable[str], workers: int, scheduler: str | None,
                  host: str) -> int:
        with self.transaction():
            # a run still marked "running" was killed (the folder lock proves it is not running now)
            self.conn.execute("UPDATE runs SET outcome = 'killed' WHERE outcome = 'running'")
            cur = self.conn.execute(
                "INSERT INTO runs (started, outcome, argv, inputs, workers, scheduler, host) "
                "VALUES (?, 'running', ?, ?, ?, ?, ?)",
                (_now(), json.dumps(list(argv)), json.dumps([str(i) for i in inputs]), int(workers), scheduler,
                 host))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, outcome: str, *, n_pending: int, n_done: int, n_failed: int) -> None:
        with self.transaction():
            self.conn.execute("UPDATE runs SET finished = ?, outcome = ?, n_pending = ?, n_done = ?, n_failed = ? "
                              "WHERE id = ?", (_now(), outcome, n_pending, n_done, n_failed, run_id))

    def runs(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM runs ORDER BY id")]

    # ------------------------------------------------------------------ rows
    def put(self, row: Mapping[str, Any]) -> None:
        """Insert or replace one series' row in its own transaction (the unit of crash safety)."""
        unknown = set(row) - set(COLUMN_NAMES)
        if unknown:
            raise KeyError(f"unknown result column(s) {sorted(unknown)}")
        cols = [c for c in COLUMN_NAMES if c in row]
        values = [_encode(c, row[c]) for c in cols]
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "series_key")
        sql = (f"INSERT INTO results ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
               f"ON CONFLICT(series_key) DO UPDATE SET {updates}")
        with self.transaction():
            self.conn.execute(sql, values)

    def put_skipped(self, items: Iterable[tuple[str, str, str]], run_id: int | None = None) -> None:
        """(path, reason, input_root) of files discovery ignored; one transaction."""
        with self.transaction():
            self.conn.executemany("INSERT INTO skipped VALUES (?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                                  "reason = excluded.reason", [(p, r, i, run_id) for p, r, i in items])

    def finished_keys(self, *, include_failed: bool = True) -> set[str]:
        sql = "SELECT series_key FROM results" + ("" if include_failed else " WHERE status = 'ok'")
        return {r[0] for r in self.conn.execute(sql)}

    def count(self, status: str | None = None) -> int:
        if status is None:
            return int(self.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
        return int(self.conn.execute("SELECT COUNT(*) FROM results WHERE status = ?", (status,)).fetchone()[0])

    def rows(self, *, order: str = "suspicion") -> list[dict[str, Any]]:
        """All rows, decoded.  ``order="suspicion"``: ok rows by probability (highest first), then failures."""
        sql = "SELECT * FROM results"
        if order == "suspicion":
            sql += " ORDER BY (status = 'ok') DESC, probability DESC, scan_id"
        elif order == "path":
            sql += " ORDER BY path, series_uid"
        return [_decode(r) for r in self.conn.execute(sql)]

    def skipped(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute("SELECT * FROM skipped ORDER BY path")]

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------------------------------------- readers
def read_results(out_dir: str | Path, *, order: str = "suspicion") -> list[dict[str, Any]]:
    """The results table of a finished (or interrupted) job, one dict per series, most suspicious first.

    Keys are ``COLUMN_NAMES`` with JSON columns decoded; ``path`` + ``series_uid`` + ``top_slice`` open the scan
    in the viewer at its most suspicious slice (``top_slice`` is a z index in ``engine.io.load_volume`` order).
    Heatmap paths in ``heatmaps`` are made absolute.  Read-only: safe while a job is still writing (WAL).
    """
    out_dir = Path(out_dir)
    db = out_dir / DB_NAME
    if not db.is_file():
        raise StoreError(f"no screening results here (missing {DB_NAME}) [{out_dir}]")
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
    conn.row_factory = sqlite3.Row
    try:
        sql = "SELECT * FROM results"
        sql += (" ORDER BY (status = 'ok') DESC, probability DESC, scan_id" if order == "suspicion"
                else " ORDER BY path, series_uid")
        rows = [_decode(r) for r in conn.execute(sql)]
    finally:
        conn.close()
    for r in rows:
        for h in r.get("heatmaps") or []:
            for k in ("overlay", "ct", "map"):
                if h.get(k):
                    h[k] = str(out_dir / h[k])
    return rows


def read_meta(out_dir: str | Path) -> dict[str, str]:
    db = Path(out_dir) / DB_NAME
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30.0)
    try:
        return {k: v for k, v in conn.execute("SELECT key, value FROM meta")}
    finally:
        conn.close()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file + rename, so a kill never leaves a half-written file under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_csv(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """``results.csv`` (atomically): ``CSV_COLUMNS``, lists as space-separated values."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        out = []
        for c in CSV_COLUMNS:
            v = r.get(c)
            if isinstance(v, list):
                v = " ".join(str(x) for x in v)
            elif isinstance(v, bool):
                v = int(v)
            elif isinstance(v, float):
                v = f"{v:.4f}" if c == "probability" else f"{v:.3f}"
            out.append("" if v is None else v)
        w.writerow(out)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))
    return path
