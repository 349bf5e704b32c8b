"""A real Orthanc server for tests: loopback ports, a temporary storage dir, a generated config.

Used by ``tests/engine/pacs/conftest.py`` (and reusable by viewer tests of the PACS browser)::

    with OrthancServer(tmp_path) as orthanc:
        orthanc.upload(paths)
        client = open_client(orthanc.dimse_server())

Orthanc (Debian packages ``orthanc`` + ``orthanc-dicomweb``) listens on a free HTTP port (REST + DICOMweb
under ``/dicom-web``) and a free DICOM port with AE title ``ORTHANC``; it checks the called AE title, and it
knows one modality, ``LUNGLENS`` at 127.0.0.1:``move_port`` (the C-MOVE destination LungLens listens on),
which is also the only AE allowed C-FIND/C-GET/C-MOVE.  ``stop()`` always ends the process (SIGCONT, SIGTERM,
then SIGKILL of its process group), also from an ``atexit`` hook if a test run is interrupted.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from engine.pacs.config import PacsServer

DICOMWEB_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
ORTHANC_AET = "ORTHANC"
CLIENT_AET = "LUNGLENS"


def orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or (
        "/usr/sbin/Orthanc" if os.access("/usr/sbin/Orthanc", os.X_OK) else None)


def dicomweb_plugin() -> str | None:
    for folder in DICOMWEB_PLUGIN_DIRS:
        for path in sorted(Path(folder).glob("libOrthancDicomWeb.so*")) if Path(folder).is_dir() else []:
            return str(path)
    return None


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    server_pem: Path  # key + certificate, as Orthanc's HTTPS server wants them


def make_tls_files(folder: Path, host: str = "127.0.0.1") -> TlsFiles:
    """A throw-away CA and a server certificate for ``host`` (and localhost), made with the openssl CLI."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed")
    folder.mkdir(parents=True, exist_ok=True)
    f = {name: folder / name for name in ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt",
                                          "server.pem", "san.ext")}
    f["san.ext"].write_text(f"subjectAltName=IP:{host},DNS:localhost\nbasicConstraints=CA:FALSE\n")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(f["ca.key"]), "-out", str(f["ca.crt"]),
        "-days", "2", "-subj", "/CN=LungLens test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(f["server.key"]), "-out", str(f["server.csr"]),
        "-subj", f"/CN={host}")
    run("x509", "-req", "-in", str(f["server.csr"]), "-CA", str(f["ca.crt"]), "-CAkey", str(f["ca.key"]),
        "-CAcreateserial", "-out", str(f["server.crt"]), "-days", "2", "-extfile", str(f["san.ext"]))
    f["server.pem"].write_bytes(f["server.key"].read_bytes() + f["server.crt"].read_bytes())
    return TlsFiles(f["ca.crt"], f["server.crt"], f["server.key"], f["server.pem"])


class TlsProxy:
    """Loopback TLS terminator: https on ``port`` -> plain TCP to ``backend`` (a thread pair per connection)."""

    def __init__(self, tls: TlsFiles, backend: tuple[str, int]):
        self.backend = backend
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._stopped = threading.Event()

    def start(self) -> "TlsProxy":
        threading.Thread(target=self._accept_loop, name="tls-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self.listener.close()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                raw, _addr = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            client = self.context.wrap_socket(raw, server_side=True)
            upstream = socket.create_connection(self.backend, timeout=30)
        except OSError:  # handshake refused by the client (untrusted certificate...) or backend gone
            raw.close()
            return
        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while True:
                    data = src.recv(65536)
                    if not data:
                        break
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)
        client.close()
        upstream.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OrthancServer:
    def __init__(self, workdir: str | Path, *, binary: str | None = None, plugin: str | None = None,
                 aet: str = ORTHANC_AET, client_aet: str = CLIENT_AET, tls: "TlsFiles | None" = None):
        self.workdir = Path(workdir)
        self.binary = binary or orthanc_binary()
        self.plugin = plugin or dicomweb_plugin()
        if not self.binary:
            raise RuntimeError("the Orthanc binary is not installed (apt-get install orthanc orthanc-dicomweb)")
        if not self.plugin:
            raise RuntimeError("the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)")
        self.aet = aet
        self.client_aet = client_aet
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.move_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "orthanc.log"
        self.tls = tls
        self.proxy: TlsProxy | None = None
        self.http = requests.Session()

    # -- lifecycle ------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Orthanc's own HTTP port (REST set-up helpers)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """The DICOMweb root LungLens talks to: https through the TLS proxy when TLS is on."""
        if self.proxy is not None:
            return f"https://127.0.0.1:{self.proxy.port}/dicom-web"
        return f"{self.url}/dicom-web"

    def config(self) -> dict:
        cfg = self._base_config()
        # TLS: DICOM TLS on Orthanc's DICOM port; https for DICOMweb through a TLS-terminating proxy (as a
        # hospital would put nginx in front), because Debian's Orthanc 1.10.1 crashes (SIGSEGV) on its first
        # request when its own "SslEnabled" is on.
        if self.tls is not None:
            cfg.update({
                "DicomTlsEnabled": True, "DicomTlsCertificate": str(self.tls.server_cert),
                "DicomTlsPrivateKey": str(self.tls.server_key),
                "DicomTlsTrustedCertificates": str(self.tls.ca_cert),
                "DicomTlsRemoteCertificateRequired": False,
            })
        return cfg

    def _base_config(self) -> dict:
        return {
            "Name": "lunglens-test",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "storage"),
            "HttpPort": self.http_port,
            "RemoteAccessAllowed": False,          # HTTP only from loopback
            "AuthenticationEnabled": False,
            "HttpThreadsCount": 8,
            "DicomServerEnabled": True,
            "DicomAet": self.aet,
            "DicomPort": self.dicom_port,
            "DicomCheckCalledAet": True,           # a wrong called AE title is rejected
            "DicomCheckModalityHost": True,        # LUNGLENS only from 127.0.0.1
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowFind": False,
            "DicomAlwaysAllowGet": False,
            "DicomAlwaysAllowMove": False,
            "DicomModalities": {"lunglens": [self.client_aet, "127.0.0.1", self.move_port]},
            "DicomScuTimeout": 5,
            "DicomScpTimeout": 10,
            "DicomAssociationCloseDelay": 0,
            "SynchronousCMove": True,
            "SaveJobs": False,
            "ConcurrentJobs": 1,
            "StorageCompression": False,
            "SyncStorageArea": False,              # no fsync per instance: throw-away storage
            "UnknownSopClassAccepted": False,
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }

    def start(self, timeout: float = 20.0) -> "OrthancServer":
        (self.workdir / "storage").mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "orthanc.json"
        cfg.write_text(json.dumps(self.config(), indent=1))
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([self.binary, str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.workdir)
        log.close()
        atexit.register(self.stop)
        if self.tls is not None:
            self.proxy = TlsProxy(self.tls, ("127.0.0.1", self.http_port)).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with code {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                if self.http.get(f"{self.url}/system", timeout=1).ok and self._dicom_listening():
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Orthanc did not come up within {timeout} s:\n{self.log_tail()}")

    def _dicom_listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, grace_s: float = 10.0) -> None:
        """End Orthanc: SIGTERM and up to ``grace_s`` for its clean shutdown (~3 s), then SIGKILL."""
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            if grace_s > 0:
                proc.terminate()
                proc.wait(timeout=grace_s)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        self.http.close()

    def __enter__(self) -> "OrthancServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): the kernel still accepts TCP connections but nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    @contextmanager
    def paused(self):
        self.pause()
        try:
            yield
        finally:
            self.resume()

    # -- REST helpers (test set-up only; the engine never uses Orthanc's own REST API) ----------------
    def rest(self, method: str, path: str, **kwargs) -> requests.Response:
        response = self.http.request(method, f"{self.url}/{path.lstrip('/')}", timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def upload(self, paths) -> list[str]:
        ids = []
        for path in paths:
            answer = self.rest("POST", "instances", data=Path(path).read_bytes()).json()
            ids.append(answer["ID"])
        return ids

    def _lookup(self, uid: str, level: str) -> str | None:
        for hit in self.rest("POST", "tools/lookup", data=uid).json():
            if hit["Type"] == level:
                return hit["ID"]
        return None

    def delete_study(self, study_uid: str) -> bool:
        orthanc_id = self._lookup(study_uid, "Study")
        if orthanc_id is None:
            return False
        self.rest("DELETE", f"studies/{orthanc_id}")
        return True

    def series_instance_count(self, series_uid: str) -> int:
        orthanc_id = self._lookup(series_uid, "Series")
        return 0 if orthanc_id is None else len(self.rest("GET", f"series/{orthanc_id}").json()["Instances"])

    def study_series_uids(self, study_uid: str) -> set[str]:
        orthanc_id = self._lookup(study_uid, "Study")
        if orthanc_id is None:
            return set()
        return {s["MainDicomTags"]["SeriesInstanceUID"]
                for s in self.rest("GET", f"studies/{orthanc_id}/series").json()}

    def instance_file(self, sop_uid: str) -> bytes:
        orthanc_id = self._lookup(sop_uid, "Instance")
        assert orthanc_id is not None, f"instance {sop_uid} not on the server"
        return self.rest("GET", f"instances/{orthanc_id}/file", headers={"Accept-Encoding": "identity"}).content

    # -- LungLens server entries --------------------------------------------------------------------
    def dimse_server(self, **changes) -> PacsServer:
        base = dict(name="orthanc-dimse", protocol="dimse", host="127.0.0.1", port=self.dicom_port,
                    called_ae=self.aet, calling_ae=self.client_aet, move_port=self.move_port, timeout_s=10.0)
        if self.tls is not None:
            base.update(tls=True, tls_ca_file=str(self.tls.ca_cert))
        base.update(changes)
        return PacsServer(**base)

    def dicomweb_server(self, **changes) -> PacsServer:
        base = dict(name="orthanc-web", protocol="dicomweb", url=self.dicomweb_url, timeout_s=10.0)
        if self.tls is not None:
            base.update(tls_ca_file=str(self.tls.ca_cert))
        base.update(changes)
        return PacsServer(**base)
