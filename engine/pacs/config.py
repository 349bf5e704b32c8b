"""The configured PACS servers and where LungLens keeps PACS things on disk.

* Server list: ``pacs_servers.json`` in the user config dir (``platformdirs.user_config_dir("lunglens")``,
  overridable with ``LUNGLENS_CONFIG_DIR``).  Passwords are never stored: a DICOMweb server that needs basic
  authentication names an environment variable holding the password (``password_env``).
* Retrieved series: the user cache dir (``platformdirs.user_cache_dir("lunglens")/pacs``, overridable with
  ``LUNGLENS_CACHE_DIR``), never a user's folder.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import platformdirs

from engine.pacs.errors import PacsConfigError

APP_NAME = "lunglens"
SERVERS_FILE = "pacs_servers.json"
CONFIG_VERSION = 1
DEFAULT_CALLING_AE = "LUNGLENS"

Protocol = Literal["dicomweb", "dimse"]
RetrieveMethod = Literal["get", "move"]

_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII except backslash, at most 16 chars


def config_dir() -> Path:
    """Folder of LungLens's user configuration (created on first save, not here)."""
    env = os.environ.get("LUNGLENS_CONFIG_DIR")
    return Path(env) if env else Path(platformdirs.user_config_dir(APP_NAME))


def cache_root() -> Path:
    """Folder under which retrieved series are cached (``<root>/<StudyUID>/<SeriesUID>/<SOPUID>.dcm``)."""
    env = os.environ.get("LUNGLENS_CACHE_DIR")
    base = Path(env) if env else Path(platformdirs.user_cache_dir(APP_NAME))
    return base / "pacs"


def servers_path() -> Path:
    return config_dir() / SERVERS_FILE


def check_ae_title(value: str, what: str) -> str:
    """Return the AE title stripped of padding, or raise :class:`PacsConfigError` saying what is wrong."""
    if not isinstance(value, str):
        raise PacsConfigError(f"{what} must be text, got {value!r}")
    ae = value.strip()
    if not ae:
        raise PacsConfigError(f"{what} is empty: an AE title is 1-16 characters, e.g. 'ORTHANC'")
    if not _AE_RE.match(ae):
        raise PacsConfigError(
            f"{what} {value!r} is not a valid AE title: use at most 16 printable ASCII characters, no backslash"
        )
    return ae


@dataclass(frozen=True)
class PacsServer:
    """One configured DICOM server.

    ``protocol="dimse"`` talks DICOM on ``host:port`` (C-ECHO, C-FIND, C-GET or C-MOVE, C-STORE) with the
    server's AE title ``called_ae`` and ours ``calling_ae``.  For C-MOVE the server must know our AE title
    with our host and ``move_port``, where LungLens listens while a retrieve runs.

    ``protocol="dicomweb"`` talks QIDO-RS / WADO-RS / STOW-RS to ``url`` (the service root, e.g.
    ``http://pacs:8042/dicom-web``); https URLs use TLS.

    TLS: ``tls=True`` (DIMSE) or an https URL (DICOMweb); ``tls_ca_file`` is the CA bundle that signs the
    server's certificate (empty = system store), ``tls_cert_file``/``tls_key_file`` a client certificate for
    servers that require one, ``tls_verify=False`` skips verification (testing only).
    """

    name: str
    protocol: Protocol = "dimse"
    host: str = "127.0.0.1"
    port: int = 104
    called_ae: str = "ORTHANC"
    calling_ae: str = DEFAULT_CALLING_AE
    url: str = ""
    retrieve: RetrieveMethod = "get"
    move_port: int = 11113
    tls: bool = False
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_verify: bool = True
    username: str = ""
    password_env: str = ""
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        where = f"PACS server {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise PacsConfigError("a PACS server needs a non-empty name")
        if self.protocol not in ("dicomweb", "dimse"):
            raise PacsConfigError(f"{where}: protocol must be 'dicomweb' or 'dimse', got {self.protocol!r}")
        if not isinstance(self.timeout_s, (int, float)) or not 0 < float(self.timeout_s) <= 3600:
            raise PacsConfigError(f"{where}: timeout_s must be a number of seconds in (0, 3600], "
                                  f"got {self.timeout_s!r}")
        if self.protocol == "dimse":
            if not self.host or not isinstance(self.host, str):
                raise PacsConfigError(f"{where}: host is empty; give the PACS host name or IP address")
            _check_port(self.port, f"{where}: port")
            object.__setattr__(self, "called_ae", check_ae_title(self.called_ae, f"{where}: called AE title"))
            object.__setattr__(self, "calling_ae", check_ae_title(self.calling_ae, f"{where}: calling AE title"))
            if self.retrieve not in ("get", "move"):
                raise PacsConfigError(f"{where}: retrieve must be 'get' (C-GET) or 'move' (C-MOVE), "
                                      f"got {self.retrieve!r}")
            if self.retrieve == "move":
                _check_port(self.move_port, f"{where}: move_port (our C-MOVE destination port)")
        else:
            parts = urlsplit(self.url or "")
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise PacsConfigError(f"{where}: url must be the DICOMweb service root, e.g. "
                                      f"'http://pacs.example.org:8042/dicom-web', got {self.url!r}")
            if self.tls and parts.scheme != "https":
                raise PacsConfigError(f"{where}: tls is on but the url is plain http; use an https:// url")
        for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
            value = getattr(self, key)
            if value and not Path(value).expanduser().is_file():
                raise PacsConfigError(f"{where}: {key} {value!r} does not exist or is not a file")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise PacsConfigError(f"{where}: give both tls_cert_file and tls_key_file for a client certificate")

    # -- derived ---------------------------------------------------------------------------------------
    @property
    def uses_tls(self) -> bool:
        return self.tls or (self.protocol == "dicomweb" and self.url.lower().startswith("https:"))

    @property
    def address(self) -> str:
        """Human-readable address for messages."""
        if self.protocol == "dicomweb":
            return self.url
        return f"{self.host}:{self.port} (called AE '{self.called_ae}', our AE '{self.calling_ae}')"

    def password(self) -> str | None:
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise PacsConfigError(
                f"PACS server {self.name!r}: the password is read from the environment variable "
                f"{self.password_env!r}, which is not set"
            )
        return value

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "") -> "PacsServer":
        if not isinstance(data, dict):
            raise PacsConfigError(f"{source}: each server must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PacsConfigError(f"{source}: server {data.get('name', '?')!r} has unknown field(s) "
                                  f"{', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise PacsConfigError(f"{source}: server entry {data!r} is incomplete ({exc})") from exc

    def with_(self, **changes) -> "PacsServer":
        return replace(self, **changes)


def _check_port(port: object, what: str) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise PacsConfigError(f"{what} must be a TCP port number 1-65535, got {port!r}")


def load_servers(path: str | Path | None = None) -> list[PacsServer]:
    """The configured servers (empty when no list was saved yet)."""
    path = Path(path) if path is not None else servers_path()
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PacsConfigError(f"cannot read the PACS server list {path}: {exc}. Fix the file or delete it "
                              f"to start with an empty list") from exc
    if not isinstance(data, dict) or not isinstance(data.get("servers"), list):
        raise PacsConfigError(f"the PACS server list {path} must be a JSON object with a 'servers' list")
    servers = [PacsServer.from_dict(item, source=str(path)) for item in data["servers"]]
    names = [s.name for s in servers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PacsConfigError(f"the PACS server list {path} names {', '.join(dupes)} more than once")
    return servers


def save_servers(servers: list[PacsServer], path: str | Path | None = None) -> Path:
    """Write the server list atomically (a crash never leaves half a file).  Returns the path."""
    path = Path(path) if path is not None else servers_path()
    names = [s.name for s in servers]
    if len(set(names)) != len(names):
        raise PacsConfigError(f"server names must be unique, got {names}")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": CONFIG_VERSION, "servers": [s.to_dict() for s in servers]}
    fd, tmp = tempfile.mkstemp(prefix=".pacs_servers.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def get_server(name: str, path: str | Path | None = None) -> PacsServer:
    servers = load_servers(path)
    for server in servers:
        if server.name == name:
            return server
    known = ", ".join(s.name for s in servers) or "none configured"
    raise PacsConfigError(f"no PACS server named {name!r} (configured: {known}); add one with "
                          f"'lunglens-engine pacs servers add'")


def upsert_server(server: PacsServer, path: str | Path | None = None) -> Path:
    """Add ``server`` to the saved list, replacing an entry of the same name."""
    servers = [s for s in load_servers(path) if s.name != server.name] + [server]
    return save_servers(servers, path)


def remove_server(name: str, path: str | Path | None = None) -> Path:
    servers = load_servers(path)
    if not any(s.name == name for s in servers):
        raise PacsConfigError(f"no PACS server named {name!r} to remove")
    return save_servers([s for s in servers if s.name != name], path)
