"""``lunglens-engine pacs``: talk to a DICOM server from the command line.

    lunglens-engine pacs servers list
    lunglens-engine pacs servers add hospital --host pacs.local --port 104 --aet PACS [--retrieve move]
    lunglens-engine pacs servers add web --url https://pacs.local/dicom-web [--ca-file ca.pem]
    lunglens-engine pacs echo --server hospital
    lunglens-engine pacs find --server hospital --patient-name DOE --date 20200101-20201231 --modality CT
    lunglens-engine pacs find --server hospital --study 1.2.3            # lists the study's series
    lunglens-engine pacs get --server hospital --study 1.2.3 [--series 1.2.3.4 ...]
    lunglens-engine pacs send --server hospital export.dcm more/

Instead of ``--server NAME`` a server can be given inline (``--url`` for DICOMweb, or ``--host/--port/--aet``
for DIMSE).  Retrieved series go to the app's cache (printed); exit status 1 on any PACS error, whose message
is printed on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from dataclasses import asdict

from engine.pacs.api import StudyQuery, TransferProgress
from engine.pacs.client import open_client
from engine.pacs.config import DEFAULT_CALLING_AE, PacsServer, get_server, load_servers, remove_server, \
    servers_path, upsert_server
from engine.pacs.errors import PacsCancelled, PacsError


def _server_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("server (a configured one, or given inline)")
    g.add_argument("--server", "-s", help="name of a configured server (see 'pacs servers list')")
    g.add_argument("--url", help="DICOMweb service root, e.g. http://host:8042/dicom-web")
    g.add_argument("--host", help="DIMSE host")
    g.add_argument("--port", type=int, help="DIMSE port")
    g.add_argument("--aet", help="the server's AE title (called AE)")
    g.add_argument("--calling-aet", help=f"LungLens's AE title (default {DEFAULT_CALLING_AE})")
    g.add_argument("--retrieve", choices=("get", "move"), help="DIMSE retrieve with C-GET (default) or C-MOVE")
    g.add_argument("--move-port", type=int, help="port LungLens listens on for C-MOVE")
    g.add_argument("--tls", action="store_true", default=None, help="DIMSE over TLS")
    g.add_argument("--ca-file", help="CA bundle to verify the server's TLS certificate")
    g.add_argument("--timeout", type=float, help="seconds to wait for the server (default 30)")
    g.add_argument("--config", help="server list file (default: the user config dir)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log the DICOM network traffic")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    servers = sub.add_parser("servers", help="list / add / remove configured servers")
    servers_sub = servers.add_subparsers(dest="servers_action", metavar="list|add|remove", required=True)
    ls = servers_sub.add_parser("list", help="list configured servers")
    ls.add_argument("--config", help="server list file")
    ls.add_argument("--json", action="store_true")
    add = servers_sub.add_parser("add", help="add or replace a server")
    add.add_argument("name")
    _server_options(add)
    add.add_argument("--username", help="DICOMweb basic-auth user")
    add.add_argument("--password-env", help="environment variable holding the DICOMweb password")
    add.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate (testing only)")
    rm = servers_sub.add_parser("remove", help="remove a server")
    rm.add_argument("name")
    rm.add_argument("--config", help="server list file")

    echo = sub.add_parser("echo", help="check the server answers (C-ECHO / QIDO ping)")
    _server_options(echo)

    find = sub.add_parser("find", help="search studies (or list a study's series with --study)")
    _server_options(find)
    find.add_argument("--patient-name", default="", help="prefix or DICOM wildcard, e.g. DOE or DOE^J*")
    find.add_argument("--patient-id", default="")
    find.add_argument("--date", default="", help="YYYYMMDD, or a range FROM-TO (either side may be empty)")
    find.add_argument("--modality", default="")
    find.add_argument("--accession", default="")
    find.add_argument("--study", default="", help="StudyInstanceUID: list its series")
    find.add_argument("--limit", type=int, default=200)
    find.add_argument("--json", action="store_true", help="print JSON instead of a table")

    get = sub.add_parser("get", help="retrieve series into the app's cache")
    _server_options(get)
    get.add_argument("--study", required=True, help="StudyInstanceUID")
    get.add_argument("--series", nargs="*", default=[], help="SeriesInstanceUID(s); default: every series")
    get.add_argument("--refresh", action="store_true", help="download again even if complete in the cache")

    send = sub.add_parser("send", help="store DICOM files/folders on the server (C-STORE / STOW-RS)")
    _server_options(send)
    send.add_argument("paths", nargs="+", help="DICOM files or folders")


def _inline_server(args: argparse.Namespace, name: str = "command-line") -> PacsServer:
    common = {}
    if args.calling_aet:
        common["calling_ae"] = args.calling_aet
    if args.timeout:
        common["timeout_s"] = args.timeout
    if args.ca_file:
        common["tls_ca_file"] = args.ca_file
    if getattr(args, "username", None):
        common["username"] = args.username
    if getattr(args, "password_env", None):
        common["password_env"] = args.password_env
    if getattr(args, "insecure", False):
        common["tls_verify"] = False
    if args.url:
        return PacsServer(name=name, protocol="dicomweb", url=args.url, **common)
    if not (args.host and args.port and args.aet):
        raise PacsError("give --server NAME, or --url URL (DICOMweb), or --host, --port and --aet (DIMSE)")
    return PacsServer(name=name, protocol="dimse", host=args.host, port=args.port, called_ae=args.aet,
                      retrieve=args.retrieve or "get", move_port=args.move_port or 11113, tls=bool(args.tls),
                      **common)


def _resolve_server(args: argparse.Namespace) -> PacsServer:
    if args.server:
        server = get_server(args.server, args.config)
        changes = {}
        if args.timeout:
            changes["timeout_s"] = args.timeout
        if args.retrieve:
            changes["retrieve"] = args.retrieve
        if args.move_port:
            changes["move_port"] = args.move_port
        if args.calling_aet:
            changes["calling_ae"] = args.calling_aet
        return server.with_(**changes) if changes else server
    return _inline_server(args)


def _progress_printer():
    stream = sys.stderr

    def show(p: TransferProgress) -> None:
        total = p.total if p.total is not None else "?"
        end = "\n" if p.total is not None and p.done >= p.total else ""
        print(f"\r  {p.stage}: {p.done}/{total} instances, {p.bytes_done / 1e6:.1f} MB", end=end, file=stream,
              flush=True)
    return show


_DATE = r"(\d{8}|\d{4}-\d{2}-\d{2})"


def _split_date(text: str) -> tuple[str, str]:
    """'20200101', '2020-01-01', '20200101-20201231', '20200101-' or '-20201231' -> (from, to)."""
    text = text.strip()
    if not text:
        return "", ""
    match = re.fullmatch(f"{_DATE}?(-){_DATE}?", text)
    if match and (match.group(1) or match.group(3)) and not re.fullmatch(_DATE, text):
        return match.group(1) or "", match.group(3) or ""
    if re.fullmatch(_DATE, text):
        return text, text
    raise PacsError(f"--date {text!r}: use YYYYMMDD, or a range FROM-TO like 20200101-20201231")


def _print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))


def run(args: argparse.Namespace) -> int:
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    if args.verbose:
        logging.basicConfig(level=logging.INFO)
    try:
        return _run(args)
    except PacsCancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return 130
    except PacsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted; nothing partial was kept in the cache", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.action == "servers":
        return _run_servers(args)
    server = _resolve_server(args)
    client = open_client(server)
    try:
        if args.action == "echo":
            seconds = client.echo()
            print(f"{server.name}: OK ({server.address}), {seconds * 1000:.0f} ms")
            return 0
        if args.action == "find":
            return _run_find(client, args)
        if args.action == "get":
            series_uids = args.series or [s.series_uid for s in client.find_series(args.study)]
            if not series_uids:
                raise PacsError(f"study {args.study} has no series on '{server.name}'")
            for uid in series_uids:
                got = client.retrieve_series(args.study, uid, progress=_progress_printer(), refresh=args.refresh)
                note = " (already in cache)" if got.from_cache else ""
                print(f"{uid}: {got.n_instances} instances -> {got.folder}{note}")
            return 0
        if args.action == "send":
            result = client.send(args.paths, progress=_progress_printer())
            print(f"stored {len(result.stored)} instance(s) on '{server.name}'")
            for uid, warning in result.warnings.items():
                print(f"  warning {uid}: {warning}")
            return 0
    finally:
        client.close()
    raise PacsError(f"unknown action {args.action!r}")


def _run_find(client, args: argparse.Namespace) -> int:
    if args.study:
        series = client.find_series(args.study)
        if args.json:
            print(json.dumps([asdict(s) for s in series], indent=1))
            return 0
        _print_table([[s.series_number if s.series_number is not None else "", s.modality, s.n_instances or "",
                       s.series_description, s.series_uid] for s in series],
                     ["#", "mod", "n", "description", "SeriesInstanceUID"])
        return 0
    start, end = _split_date(args.date)
    query = StudyQuery(patient_name=args.patient_name, patient_id=args.patient_id, study_date_from=start or None,
                       study_date_to=end or None, modality=args.modality, accession_number=args.accession,
                       limit=args.limit)
    studies = client.find_studies(query)
    if args.json:
        print(json.dumps([asdict(s) for s in studies], indent=1))
        return 0
    _print_table([[s.study_date, s.patient_name, s.patient_id, "/".join(s.modalities), s.n_series or "",
                   s.study_description, s.study_uid] for s in studies],
                 ["date", "patient", "id", "mod", "series", "description", "StudyInstanceUID"])
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}", file=sys.stderr)
    return 0


def _run_servers(args: argparse.Namespace) -> int:
    if args.servers_action == "list":
        servers = load_servers(args.config)
        if args.json:
            print(json.dumps([s.to_dict() for s in servers], indent=1))
        elif not servers:
            print(f"no PACS servers configured ({args.config or servers_path()})")
        else:
            _print_table([[s.name, s.protocol, s.address, s.retrieve if s.protocol == "dimse" else "",
                           "yes" if s.uses_tls else ""] for s in servers],
                         ["name", "protocol", "address", "retrieve", "tls"])
        return 0
    if args.servers_action == "add":
        server = _inline_server(args, name=args.name)
        path = upsert_server(server, args.config)
        print(f"saved server '{server.name}' ({server.address}) to {path}")
        return 0
    if args.servers_action == "remove":
        path = remove_server(args.name, args.config)
        print(f"removed server '{args.name}' from {path}")
        return 0
    raise PacsError(f"unknown servers action {args.servers_action!r}")
