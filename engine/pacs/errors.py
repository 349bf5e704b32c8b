"""Every way talking to a PACS can go wrong, as a specific exception.

The GUI and the CLI print ``str(error)``: each message says what happened, with which server (name, address,
AE titles) and what to do about it.  All derive from :class:`PacsError`, so a caller that only wants "it
failed, tell the user" catches that one class.
"""

from __future__ import annotations


class PacsError(Exception):
    """Base class of every PACS failure.  ``server`` is the configured server's name (or None)."""

    def __init__(self, message: str, server: str | None = None):
        self.server = server
        super().__init__(message)


class PacsConfigError(PacsError):
    """A server entry or the server-list file is invalid (bad AE title, port, URL, unreadable JSON...)."""


class ServerUnreachableError(PacsError):
    """Nothing answers at the configured address: connection refused, unknown host, no route."""


class AssociationRejectedError(PacsError):
    """The DICOM server refused the association: wrong called AE title, our AE title not registered, ..."""


class PacsAuthError(PacsError):
    """The DICOMweb server wants credentials (HTTP 401) or refuses ours (HTTP 403)."""


class PacsTlsError(PacsError):
    """The TLS handshake failed: certificate not trusted, wrong host name, server without TLS, ..."""


class PacsTimeoutError(PacsError):
    """The server accepted the connection but did not answer within the configured timeout."""


class PacsProtocolError(PacsError):
    """The server answered something unexpected (an HTTP error, a DIMSE failure status, malformed data)."""


class RemoteNotFoundError(PacsError):
    """The requested study/series does not exist on the server (or not any more)."""


class TransferIncompleteError(PacsError):
    """A retrieve ended with fewer instances than the server announced; nothing was kept in the cache."""

    def __init__(self, message: str, server: str | None = None, received: int = 0, expected: int = 0):
        self.received = received
        self.expected = expected
        super().__init__(message, server)


class SeriesVanishedError(TransferIncompleteError, RemoteNotFoundError):
    """The series (or its whole study) was deleted on the server while it was being transferred."""


class SendRejectedError(PacsError):
    """The server refused to store some or all of the instances we sent.  ``failed`` maps SOP UID -> reason."""

    def __init__(self, message: str, server: str | None = None, stored: tuple[str, ...] = (),
                 failed: dict[str, str] | None = None):
        self.stored = tuple(stored)
        self.failed = dict(failed or {})
        super().__init__(message, server)


class PacsCancelled(PacsError):
    """The caller cancelled the operation (not a failure of the server).  Nothing partial is kept."""
