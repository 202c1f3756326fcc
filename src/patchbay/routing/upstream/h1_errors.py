"""The errors of the HTTP/1.1 client: one base class, one subclass per way a request can fail."""

from __future__ import annotations


class H1Error(Exception):
    """Base of the client's errors; ``origin`` is the ``host:port`` the request went to."""

    def __init__(self, message: str, origin: str) -> None:
        super().__init__(message)
        self.origin = origin


class H1ConnectError(H1Error):
    """No connection: refused, unresolvable, TLS handshake failed, timed out, or no free slot."""


class H1ProtocolError(H1Error):
    """The server sent something that is not a valid HTTP/1.1 response."""


class H1ClosedError(H1Error):
    """The connection closed before the response was complete."""


class H1BodyTooLargeError(H1Error):
    """The body exceeded the ``max_size`` given to ``Response.read``."""
