"""The exception tree; the edges (HTTP, JSON-RPC, CLI) map these to their own errors."""

from __future__ import annotations


class PatchbayError(Exception):
    """Base of every error Patchbay raises on purpose."""

    code = "error"


class NotFound(PatchbayError):
    code = "not_found"


class PathNotFound(NotFound):
    """A JSON pointer names nothing in a document (the tool exists; the value does not, or no longer)."""

    code = "path_not_found"


class Conflict(PatchbayError):
    code = "conflict"


class InvalidInput(PatchbayError):
    code = "invalid_input"


class TooLarge(InvalidInput):
    """Arguments, a document or a result over its size limit."""

    code = "too_large"


class Unauthenticated(PatchbayError):
    code = "unauthenticated"


class Forbidden(PatchbayError):
    code = "forbidden"


class UpstreamError(PatchbayError):
    """An upstream MCP server could not be reached, crashed, timed out, or answered garbage."""

    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    code = "upstream_timeout"


class StoreUnavailable(PatchbayError):
    """The shared store (Redis) could not be reached or did not answer in time."""

    code = "store_unavailable"


class RateLimited(PatchbayError):
    """A rate limit is exhausted (calls, logins); ``retry_after`` says in how many seconds to try again."""

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConnectionRequired(UpstreamError):
    """The caller has no usable OAuth connection to an upstream; ``connect_url`` starts one."""

    code = "connection_required"

    def __init__(self, message: str, *, connect_url: str) -> None:
        super().__init__(message)
        self.connect_url = connect_url
