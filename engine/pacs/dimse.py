"""DIMSE client on :mod:`pynetdicom`: C-ECHO, C-FIND (study root), C-GET or C-MOVE, C-STORE.

* Retrieve first lists the series' instances with an IMAGE-level C-FIND (so progress has a total and a
  series deleted mid-transfer can be told apart from a flaky network), then runs C-GET over the same kind
  of association (no port to open) or C-MOVE to a storage SCP LungLens runs on ``move_port`` for the
  duration of the retrieve.  Received instances are written exactly as encoded on the wire.
* C-GET proposes one presentation context per common transfer syntax for each SOP class in the series, so
  the server can send its stored files unchanged (no transcoding) whatever their syntax.
* Before associating, a plain TCP (and TLS) connect tells "nothing listens there" apart from "it answers
  but refuses us", so each failure gets its own message.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
    JPEG2000, JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1,
    JPEGLSLossless, JPEGLSNearLossless, RLELossless,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage, StudyRootQueryRetrieveInformationModelFind, StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove, Verification,
)

from engine.pacs.api import (
    CancelLike, ProgressCallback, RetrievedSeries, SendResult, SeriesResult, StudyQuery, StudyResult,
    TransferProgress, as_cancel_check, check_uid, load_send_items,
)
from engine.pacs.cache import SeriesCache, SeriesStaging
from engine.pacs.config import PacsServer
from engine.pacs.errors import (
    AssociationRejectedError, PacsCancelled, PacsConfigError, PacsError, PacsProtocolError, PacsTimeoutError,
    PacsTlsError, RemoteNotFoundError, SendRejectedError, SeriesVanishedError, ServerUnreachableError,
    TransferIncompleteError,
)

# Transfer syntaxes proposed for C-GET, most common first (each gets its own context per SOP class).
GET_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLosslessSV1, JPEGLossless, JPEG2000Lossless,
    RLELossless, JPEGLSLossless, DeflatedExplicitVRLittleEndian, JPEG2000, JPEGBaseline8Bit, JPEGExtended12Bit,
    JPEGLSNearLossless, ExplicitVRBigEndian,
)
_MAX_CONTEXTS = 127
# Proposed for C-GET when the server's C-FIND does not say which SOP classes a series holds.
FALLBACK_SOP_CLASSES = (
    CTImageStorage, "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1",
    "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.7.2", "1.2.840.10008.5.1.4.1.1.7.4",
    "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
    "1.2.840.10008.5.1.4.1.1.20", "1.2.840.10008.5.1.4.1.1.66",
)  # CT, Enhanced CT, MR, Enhanced MR, SC, MF grey/true-colour SC, PET, CR, DX, NM, raw data
_PENDING = (0xFF00, 0xFF01)
_MOVE_LOCK = threading.Lock()
# pynetdicom logs every failure at ERROR; LungLens reports them as exceptions.  A NullHandler keeps them off
# stderr unless the application configures logging (the CLI's --verbose does).
logging.getLogger("pynetdicom").addHandler(logging.NullHandler())  # one C-MOVE destination port: retrieves by C-MOVE run one at a time

_STATUS_TEXT = {
    0x0000: "success", 0xFE00: "cancelled", 0xB000: "some sub-operations failed",
    0xA701: "out of resources: unable to calculate number of matches",
    0xA702: "out of resources: unable to perform sub-operations",
    0xA700: "out of resources", 0xA801: "move destination unknown", 0xA900: "identifier does not match SOP class",
    0x0122: "SOP class not supported", 0x0124: "refused: not authorised", 0x0110: "processing failure",
    0x0117: "invalid SOP instance", 0x0211: "unrecognised operation", 0x0212: "mistyped argument",
    0xB007: "data set does not match SOP class (stored anyway)", 0xB006: "elements discarded (stored anyway)",
    0xB00A: "stored with coercion of data elements",
}
_REJECT_DIAGNOSTIC = {  # (source, diagnostic) -> explanation; PS3.8 9.3.4
    (1, 1): "no reason given",
    (1, 2): "application context name not supported",
    (1, 3): "our (calling) AE title is not recognised",
    (1, 7): "the called AE title is not recognised",
    (2, 1): "no reason given (ACSE)",
    (2, 2): "protocol version not supported",
    (3, 1): "temporary congestion",
    (3, 2): "local limit exceeded (too many associations)",
}


def _status_text(code: int) -> str:
    if code in _STATUS_TEXT:
        return _STATUS_TEXT[code]
    if 0xA700 <= code <= 0xA7FF:
        return "out of resources"
    if 0xA900 <= code <= 0xA9FF:
        return "data set does not match SOP class"
    if 0xC000 <= code <= 0xCFFF:
        return "unable to process"
    return "unknown status"


def _code(status: Dataset | None) -> int | None:
    if status is None or "Status" not in status:
        return None
    return int(status.Status)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DimseClient:
    """A :class:`~engine.pacs.api.PacsClient` for a DICOM (DIMSE) server."""

    def __init__(self, server: PacsServer, *, cache_dir: str | Path | None = None):
        if server.protocol != "dimse":
            raise PacsConfigError(f"server {server.name!r} is a {server.protocol} server, not DIMSE")
        self.server = server
        self.cache = SeriesCache(cache_dir)

    def close(self) -> None:
        """Nothing held between calls (one association per operation)."""

    def __enter__(self) -> "DimseClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- connection --------------------------------------------------------------------------------------
    def _who(self) -> str:
        s = self.server
        return f"DICOM server '{s.name}' at {s.host}:{s.port}"

    def _tls_context(self) -> ssl.SSLContext | None:
        s = self.server
        if not s.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(Path(s.tls_ca_file).expanduser()) if s.tls_ca_file else None)
        if not s.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if s.tls_cert_file:
            ctx.load_cert_chain(str(Path(s.tls_cert_file).expanduser()), str(Path(s.tls_key_file).expanduser()))
        return ctx

    def _probe(self, what: str) -> None:
        """After a failed association: a plain TCP (and TLS) connect tells 'nothing listens there', 'unknown
        host' and 'TLS refused' apart, each with its own message.  Returns if the server is reachable."""
        s = self.server
        try:
            sock = socket.create_connection((s.host, s.port), timeout=s.timeout_s)
        except socket.gaierror as exc:
            raise ServerUnreachableError(f"{what}: unknown host {s.host!r} for the {self._who()} ({exc}); check "
                                         f"the host name", s.name) from exc
        except (TimeoutError, socket.timeout) as exc:
            raise PacsTimeoutError(f"{what}: connecting to the {self._who()} timed out after {s.timeout_s:g} s; "
                                   f"check the host, port and any firewall", s.name) from exc
        except ConnectionRefusedError as exc:
            raise ServerUnreachableError(f"{what}: connection refused by {s.host}:{s.port} — no DICOM server "
                                         f"listens there. Is the '{s.name}' PACS running, and is the port "
                                         f"right?", s.name) from exc
        except OSError as exc:
            raise ServerUnreachableError(f"{what}: cannot connect to the {self._who()} ({exc.strerror or exc})",
                                         s.name) from exc
        try:
            ctx = self._tls_context()
            if ctx is not None:
                try:
                    with ctx.wrap_socket(sock, server_hostname=s.host):
                        pass
                except (ssl.SSLError, OSError) as exc:
                    raise PacsTlsError(f"{what}: TLS handshake with the {self._who()} failed ({exc}). Check that "
                                       f"the server has DICOM TLS on this port, the CA file, and the host name "
                                       f"in its certificate", s.name) from exc
        finally:
            sock.close()

    def _new_ae(self) -> AE:
        ae = AE(ae_title=self.server.calling_ae)
        t = self.server.timeout_s
        ae.acse_timeout = t
        ae.dimse_timeout = t
        ae.network_timeout = t
        ae.connection_timeout = t
        ae.maximum_pdu_size = 0  # no limit on what we receive
        return ae

    @contextmanager
    def _association(self, contexts: list[tuple[str, list[str]]], what: str, *, ext_neg=None,
                     handlers=None) -> Iterator:
        s = self.server
        ae = self._new_ae()
        for abstract, syntaxes in contexts:
            ae.add_requested_context(abstract, syntaxes)
        ctx = self._tls_context()
        for attempt in (1, 2):
            start = time.monotonic()
            assoc = ae.associate(s.host, s.port, ae_title=s.called_ae, ext_neg=ext_neg, evt_handlers=handlers,
                                 tls_args=(ctx, s.host) if ctx is not None else None)
            if assoc.is_established:
                break
            elapsed = time.monotonic() - start
            if getattr(assoc.acceptor, "primitive", None) is None and elapsed < 0.8 * s.timeout_s:
                self._probe(what)  # no answer at all: raises the precise reason (refused, unknown host, TLS)
                if attempt == 1:  # reachable but closed on us without a reply (busy server): once more
                    time.sleep(0.2)
                    continue
            raise self._association_failure(assoc, elapsed, what, contexts)
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _association_failure(self, assoc, elapsed: float, what: str, contexts) -> PacsError:
        s = self.server
        prim = getattr(assoc.acceptor, "primitive", None)
        if assoc.is_rejected and prim is not None:
            source, diag = prim.result_source, prim.diagnostic
            reason = _REJECT_DIAGNOSTIC.get((source, diag), f"source {source}, reason {diag}")
            if (source, diag) == (1, 7):
                hint = (f"the server's AE title is not '{s.called_ae}'. Check the AE title configured for "
                        f"'{s.name}' (ask the PACS administrator)")
            elif (source, diag) == (1, 3):
                hint = (f"the server does not know LungLens's AE title '{s.calling_ae}'. Ask the PACS "
                        f"administrator to register it (AE title, this computer's address, port {s.move_port})")
            elif source == 3:
                hint = "the server is busy; try again in a moment"
            else:
                hint = "check both AE titles with the PACS administrator"
            return AssociationRejectedError(f"{what}: the {self._who()} rejected the association: {reason}; "
                                            f"{hint}", s.name)
        if prim is not None and getattr(prim, "result", None) == 0:
            services = ", ".join(sorted({str(getattr(a, "name", a)) for a, _ in contexts}))
            return PacsProtocolError(f"{what}: the {self._who()} accepted the association but none of the "
                                     f"requested services ({services}); it may not support them"
                                     + ("; try retrieve='move' (C-MOVE) instead of C-GET"
                                        if "get" in services.lower() else ""), s.name)
        if elapsed >= 0.8 * s.timeout_s:
            return PacsTimeoutError(f"{what}: the {self._who()} accepted the connection but did not answer the "
                                    f"association request within {s.timeout_s:g} s. The server may be hung or "
                                    f"overloaded; try again or raise timeout_s", s.name)
        tls = (" (TLS is on: does the server expect TLS on this port?)" if s.tls
               else " (if this port expects DICOM TLS, turn tls on for this server)")
        return PacsProtocolError(f"{what}: the {self._who()} closed the connection during association "
                                 f"negotiation{tls}. Check that host:port is a DICOM port and that both AE titles "
                                 f"are right", s.name)

    def _lost(self, assoc, what: str, started: float) -> PacsError:
        """No (valid) answer to a request: the DIMSE timeout expired, or the server aborted."""
        s = self.server
        if time.monotonic() - started >= 0.8 * s.timeout_s:
            return PacsTimeoutError(f"{what}: no answer from the {self._who()} within {s.timeout_s:g} s. The "
                                    f"server may be hung or overloaded; try again or raise timeout_s", s.name)
        deadline = time.monotonic() + 0.5  # the reactor thread flags the abort a moment after the empty status
        while assoc.is_established and not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        if assoc.is_aborted:
            return AssociationRejectedError(
                f"{what}: the {self._who()} aborted the association instead of answering. Servers do this when "
                f"LungLens's AE title '{s.calling_ae}' is not allowed to query or retrieve: ask the PACS "
                f"administrator to register AE '{s.calling_ae}' (this computer's address, port {s.move_port})",
                s.name)
        return PacsProtocolError(f"{what}: the {self._who()} sent no valid answer", s.name)

    # -- PacsClient --------------------------------------------------------------------------------------
    def echo(self) -> float:
        start = time.perf_counter()
        with self._association([(Verification, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])],
                               "echo (C-ECHO)") as assoc:
            sent = time.monotonic()
            status = assoc.send_c_echo()
            code = _code(status)
            if code is None:
                raise self._lost(assoc, "echo (C-ECHO)", sent)
            if code != 0:
                raise PacsProtocolError(f"echo (C-ECHO): the {self._who()} answered status 0x{code:04X} "
                                        f"({_status_text(code)})", self.server.name)
        return time.perf_counter() - start

    def _find(self, identifier: Dataset, what: str) -> list[Dataset]:
        contexts = [(StudyRootQueryRetrieveInformationModelFind, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
        out: list[Dataset] = []
        with self._association(contexts, what) as assoc:
            sent = time.monotonic()
            for status, ident in assoc.send_c_find(identifier, StudyRootQueryRetrieveInformationModelFind):
                code = _code(status)
                if code is None:
                    raise self._lost(assoc, what, sent)
                sent = time.monotonic()
                if code in _PENDING:
                    if ident is not None:
                        out.append(ident)
                    continue
                if code == 0x0000:
                    break
                hint = ""
                if code in (0x0124, 0xA700) or 0xC000 <= code <= 0xCFFF:
                    hint = (f"; if LungLens's AE title '{self.server.calling_ae}' is not registered on the server, "
                            f"ask the PACS administrator to add it")
                raise PacsProtocolError(f"{what}: the {self._who()} answered status 0x{code:04X} "
                                        f"({_status_text(code)}){hint}", self.server.name)
        return out

    def find_studies(self, query: StudyQuery) -> list[StudyResult]:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientName = query.name_pattern()
        ds.PatientID = query.patient_id.strip()
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyDate = query.date_range()
        ds.StudyTime = ""
        ds.AccessionNumber = query.accession_number.strip()
        ds.StudyDescription = query.study_description.strip()
        ds.ModalitiesInStudy = query.modality.strip()
        ds.StudyInstanceUID = query.study_uid.strip()
        ds.NumberOfStudyRelatedSeries = ""
        ds.NumberOfStudyRelatedInstances = ""
        results = []
        for item in self._find(ds, "study search (C-FIND)"):
            mods = item.get("ModalitiesInStudy", "")
            mods = [mods] if isinstance(mods, str) else list(mods)
            results.append(StudyResult(
                study_uid=check_uid(item.get("StudyInstanceUID"), "StudyInstanceUID", self.server.name),
                patient_name=str(item.get("PatientName", "") or ""),
                patient_id=str(item.get("PatientID", "") or ""),
                patient_birth_date=str(item.get("PatientBirthDate", "") or ""),
                patient_sex=str(item.get("PatientSex", "") or ""),
                study_date=str(item.get("StudyDate", "") or ""),
                study_time=str(item.get("StudyTime", "") or ""),
                study_description=str(item.get("StudyDescription", "") or ""),
                accession_number=str(item.get("AccessionNumber", "") or ""),
                modalities=tuple(str(m) for m in mods if m),
                n_series=_int(item.get("NumberOfStudyRelatedSeries")),
                n_instances=_int(item.get("NumberOfStudyRelatedInstances")),
            ))
        results.sort(key=lambda r: (r.study_date, r.study_time), reverse=True)
        return results[: query.limit] if query.limit else results

    def find_series(self, study_uid: str) -> list[SeriesResult]:
        study_uid = check_uid(study_uid, "StudyInstanceUID")
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.QueryRetrieveLevel = "SERIES"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = ""
        ds.Modality = ""
        ds.SeriesNumber = ""
        ds.SeriesDescription = ""
        ds.BodyPartExamined = ""
        ds.NumberOfSeriesRelatedInstances = ""
        results = [SeriesResult(
            study_uid=study_uid,
            series_uid=check_uid(item.get("SeriesInstanceUID"), "SeriesInstanceUID", self.server.name),
            modality=str(item.get("Modality", "") or ""),
            series_number=_int(item.get("SeriesNumber")),
            series_description=str(item.get("SeriesDescription", "") or ""),
            body_part=str(item.get("BodyPartExamined", "") or ""),
            n_instances=_int(item.get("NumberOfSeriesRelatedInstances")),
        ) for item in self._find(ds, "series search (C-FIND)")]
        return sorted(results, key=lambda s: (s.series_number is None, s.series_number or 0, s.series_uid))

    def find_instances(self, study_uid: str, series_uid: str) -> list[tuple[str, str]]:
        """``(SOPInstanceUID, SOPClassUID)`` of the series in InstanceNumber order ([] if it does not exist)."""
        ds = Dataset()
        ds.QueryRetrieveLevel = "IMAGE"
        ds.StudyInstanceUID = check_uid(study_uid, "StudyInstanceUID")
        ds.SeriesInstanceUID = check_uid(series_uid, "SeriesInstanceUID")
        ds.SOPInstanceUID = ""
        ds.SOPClassUID = ""
        ds.InstanceNumber = ""
        found = []
        for item in self._find(ds, "instance search (C-FIND)"):
            found.append((_int(item.get("InstanceNumber")),
                          check_uid(item.get("SOPInstanceUID"), "SOPInstanceUID", self.server.name),
                          str(item.get("SOPClassUID", "") or "")))
        found.sort(key=lambda f: (f[0] is None, f[0] or 0, f[1]))
        return [(uid, cls) for _n, uid, cls in found]

    def retrieve_series(self, study_uid: str, series_uid: str, *, progress: ProgressCallback | None = None,
                        cancel: CancelLike = None, refresh: bool = False) -> RetrievedSeries:
        cancelled = as_cancel_check(cancel)
        what = f"retrieve of series {series_uid}"
        instances = self.find_instances(study_uid, series_uid)
        if not instances:
            raise RemoteNotFoundError(f"{what}: the series (study {study_uid}) is not on the {self._who()}",
                                      self.server.name)
        total = len(instances)
        if not refresh:
            cached = self.cache.lookup(study_uid, series_uid, expected=total)
            if cached is not None:
                if progress:
                    progress(TransferProgress(total, total, "retrieve", "already in cache", cached.bytes_total))
                return cached
        expected = {uid for uid, _cls in instances}
        known_classes = all(cls for _uid, cls in instances)
        sop_classes = sorted({cls for _uid, cls in instances if cls} | (set() if known_classes else
                                                                          set(FALLBACK_SOP_CLASSES)))
        identifier = Dataset()
        identifier.QueryRetrieveLevel = "SERIES"
        identifier.StudyInstanceUID = study_uid
        identifier.SeriesInstanceUID = series_uid

        with self.cache.staging(study_uid, series_uid, self.server.name) as staging:
            state: dict = {"error": None, "cancelled": False, "unexpected": 0}
            lock = threading.Lock()

            def on_store(event) -> int:
                try:
                    if cancelled():
                        state["cancelled"] = True
                        return 0xA700  # refuse further instances; the loop below aborts
                    sop_uid = str(event.request.AffectedSOPInstanceUID)
                    if sop_uid not in expected:
                        state["unexpected"] += 1
                        return 0xA900
                    data = event.encoded_dataset(include_meta=True)
                    with lock:
                        staging.write(sop_uid, data)
                        done, size = staging.count, staging.bytes_total
                    if progress:
                        progress(TransferProgress(done, total, "retrieve", f"{done}/{total} instances", size))
                    return 0x0000
                except Exception as exc:  # never let an exception kill the association thread silently
                    state["error"] = exc
                    return 0xA700

            if progress:
                progress(TransferProgress(0, total, "retrieve", f"retrieving {total} instances"))
            if self.server.retrieve == "move":
                final = self._run_move(identifier, on_store, sop_classes, cancelled, state, what, known_classes)
            else:
                final = self._run_get(identifier, on_store, sop_classes, cancelled, state, what)
            if state["cancelled"] or cancelled():
                raise PacsCancelled(f"{what} cancelled", self.server.name)
            if state["error"] is not None:
                exc = state["error"]
                if isinstance(exc, OSError):
                    raise PacsError(f"{what}: could not write into the cache {self.cache.root} ({exc}); free "
                                    f"some disk space or clear the cache", self.server.name) from exc
                raise exc  # a PacsError, or an exception of the caller's progress callback
            if final == 0x0000 and staging.count == total:
                return staging.commit()
            self._raise_incomplete(study_uid, series_uid, staging, total, final, what)
            raise AssertionError("unreachable")

    def _get_contexts(self, sop_classes: list[str]) -> list[tuple[str, list[str]]]:
        contexts: list[tuple[str, list[str]]] = [
            (StudyRootQueryRetrieveInformationModelGet, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
        if len(sop_classes) * len(GET_TRANSFER_SYNTAXES) + 1 <= _MAX_CONTEXTS:
            contexts += [(cls, [ts]) for cls in sop_classes for ts in GET_TRANSFER_SYNTAXES]
        else:
            contexts += [(cls, list(GET_TRANSFER_SYNTAXES)) for cls in sop_classes[: _MAX_CONTEXTS - 1]]
        return contexts

    def _run_get(self, identifier, on_store, sop_classes, cancelled, state, what) -> int | None:
        roles = [build_role(cls, scp_role=True) for cls in sop_classes]
        final = None
        with self._association(self._get_contexts(sop_classes), what + " (C-GET)", ext_neg=roles,
                               handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
            sent = time.monotonic()
            for status, _ident in assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet):
                if cancelled() or state["cancelled"]:
                    state["cancelled"] = True
                    assoc.abort()
                    break
                code = _code(status)
                if code is None:
                    raise self._lost(assoc, what + " (C-GET)", sent)
                sent = time.monotonic()
                if code in _PENDING:
                    continue
                final = code
                state["sub_failed"] = _int(status.get("NumberOfFailedSuboperations"))
        return final

    def _run_move(self, identifier, on_store, sop_classes, cancelled, state, what,
                  known_classes: bool = True) -> int | None:
        s = self.server
        scp = self._new_ae()
        scp.require_called_aet = True
        classes = set(sop_classes) if known_classes else {cx.abstract_syntax for cx in StoragePresentationContexts}
        for cls in sorted(classes):
            scp.add_supported_context(cls, ALL_TRANSFER_SYNTAXES)
        bind = "127.0.0.1" if _is_loopback(s.host) else "0.0.0.0"
        final = None
        with _MOVE_LOCK:
            try:
                listener = scp.start_server((bind, s.move_port), block=False,
                                            evt_handlers=[(evt.EVT_C_STORE, on_store)])
            except OSError as exc:
                raise PacsConfigError(
                    f"{what}: cannot listen on port {s.move_port} to receive the C-MOVE ({exc.strerror or exc}). "
                    f"Another program uses it: choose another move_port for '{s.name}' and register it on the "
                    f"PACS, or use retrieve='get'", s.name) from exc
            try:
                contexts = [(StudyRootQueryRetrieveInformationModelMove,
                             [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
                with self._association(contexts, what + " (C-MOVE)") as assoc:
                    sent = time.monotonic()
                    for status, _ident in assoc.send_c_move(identifier, s.calling_ae,
                                                            StudyRootQueryRetrieveInformationModelMove):
                        if cancelled() or state["cancelled"]:
                            state["cancelled"] = True
                            assoc.abort()
                            break
                        code = _code(status)
                        if code is None:
                            raise self._lost(assoc, what + " (C-MOVE)", sent)
                        sent = time.monotonic()
                        if code in _PENDING:
                            continue
                        final = code
                        state["sub_failed"] = _int(status.get("NumberOfFailedSuboperations"))
                if final == 0xA801:
                    raise PacsProtocolError(
                        f"{what}: the {self._who()} does not know LungLens's AE title '{s.calling_ae}' as a C-MOVE "
                        f"destination. Ask the PACS administrator to add AE '{s.calling_ae}' with this computer's "
                        f"address and port {s.move_port}, or use retrieve='get'", s.name)
            finally:
                listener.shutdown()
        return final

    def _raise_incomplete(self, study_uid: str, series_uid: str, staging: SeriesStaging, total: int,
                          final: int | None, what: str) -> None:
        s = self.server
        try:
            remaining = self.find_instances(study_uid, series_uid)
        except PacsError:
            remaining = None
        if remaining == []:
            raise SeriesVanishedError(
                f"series {series_uid} was deleted from the {self._who()} during the transfer (received "
                f"{staging.count} of {total} instances); nothing was kept in the cache. Search again: the study "
                f"may have been moved or deleted", s.name, staging.count, total)
        status = "no final status" if final is None else f"status 0x{final:04X} ({_status_text(final)})"
        changed = (" — the series changed on the server meanwhile"
                   if remaining is not None and len(remaining) != total else "")
        raise TransferIncompleteError(
            f"{what}: the {self._who()} sent {staging.count} of {total} instances and ended with {status}"
            f"{changed}; nothing was kept in the cache. Try again", s.name, staging.count, total)

    def send(self, items: Iterable[str | Path | pydicom.Dataset], *, progress: ProgressCallback | None = None,
             cancel: CancelLike = None) -> SendResult:
        cancelled = as_cancel_check(cancel)
        to_send = load_send_items(items)
        total = len(to_send)
        # one context per (SOP class, transfer syntax) actually present, plus uncompressed fallbacks
        wanted: dict[str, set[str]] = {}
        for item in to_send:
            wanted.setdefault(item.sop_class_uid, set()).add(item.transfer_syntax_uid)
        contexts: list[tuple[str, list[str]]] = []
        for cls, syntaxes in sorted(wanted.items()):
            for ts in sorted(syntaxes - {ExplicitVRLittleEndian, ImplicitVRLittleEndian}):
                contexts.append((cls, [ts]))
            contexts.append((cls, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        if len(contexts) > _MAX_CONTEXTS:
            raise PacsError(f"send: {len(wanted)} different SOP classes / transfer syntaxes in one send; send "
                            f"them in smaller groups", self.server.name)
        stored: list[str] = []
        warnings: dict[str, str] = {}
        failed: dict[str, str] = {}
        if progress:
            progress(TransferProgress(0, total, "send", f"sending {total} instances"))
        with self._association(contexts, "send (C-STORE)") as assoc:
            for i, item in enumerate(to_send, 1):
                if cancelled():
                    assoc.abort()
                    raise PacsCancelled(f"send cancelled after {len(stored)} of {total} instances",
                                        self.server.name)
                uid, label = item.sop_instance_uid, item.label
                ds = item.load()
                sent = time.monotonic()
                try:
                    status = assoc.send_c_store(ds)
                except (ValueError, AttributeError) as exc:
                    failed[uid] = f"{label}: {exc}"
                    continue
                code = _code(status)
                if code is None:
                    raise self._lost(assoc, "send (C-STORE)", sent)
                if code == 0x0000:
                    stored.append(uid)
                elif code in (0xB000, 0xB006, 0xB007, 0xB00A):
                    stored.append(uid)
                    warnings[uid] = f"0x{code:04X} {_status_text(code)}"
                else:
                    failed[uid] = f"{label}: status 0x{code:04X} ({_status_text(code)})"
                if progress:
                    progress(TransferProgress(i, total, "send", f"{i}/{total} instances"))
        if failed:
            first = next(iter(failed.items()))
            raise SendRejectedError(f"send (C-STORE): the {self._who()} refused {len(failed)} of {total} "
                                    f"instance(s) (e.g. {first[1]}); {len(stored)} stored", self.server.name,
                                    tuple(stored), failed)
        return SendResult(tuple(stored), warnings)


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
