"""What the two HTTP transports share: a server-sent-events reader, the HTTP client, error wording."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus

from patchbay.errors import UpstreamError
from patchbay.routing.upstream.h1 import URL, H1ConnectError, H1Error, H1Pool, Response

_REASONS = {
    401: "unauthorized: check the upstream credentials",
    403: "forbidden: the upstream credentials lack access",
    404: "not found: check the upstream URL",
    429: "rate limited by the upstream",
}


class HttpStatusError(UpstreamError):
    """The upstream answered with an HTTP error status and no JSON-RPC answer."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One dispatched server-sent event."""

    event: str
    data: str
    id: str | None
    retry_ms: int | None = None


async def _lines(response: Response) -> AsyncIterator[str]:
    """The body's lines as they arrive (LF, CRLF or CR ends a line)."""
    pending = b""
    async for chunk in response.stream():
        pending += chunk
        lines = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        pending = lines.pop()
        for line in lines:
            yield line.decode("utf-8", "replace")
    if pending:
        yield pending.decode("utf-8", "replace")


async def iter_events(response: Response) -> AsyncIterator[ServerEvent]:
    """Parse a ``text/event-stream`` body into events; comments are skipped.

    An event whose data is empty (a SEP-1699 priming event) is still yielded: its
    id and retry hint are what a client needs to resume the stream.
    """
    event = ""
    data: list[str] = []
    last_id: str | None = None
    retry_ms: int | None = None
    async for line in _lines(response):
        if not line:
            if data:
                yield ServerEvent(event or "message", "\n".join(data), last_id, retry_ms)
            event, data = "", []
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            last_id = value
        elif field == "retry" and value.isdigit():
            retry_ms = int(value)


def parse_url(name: str, url: str | None) -> URL:
    """The upstream's URL, parsed once for every request it will carry."""
    try:
        return URL(url or "")
    except ValueError as exc:
        raise UpstreamError(f"upstream {name!r} needs an http(s) URL: {exc}") from None


def make_client(connect_timeout: float) -> H1Pool:
    """The HTTP client one pool shares across upstreams (pooled keep-alive connections)."""
    # No read timeout: every call carries its own deadline and event streams idle for long.
    return H1Pool(max_per_origin=200, idle_seconds=60.0, connect_timeout=connect_timeout)


def status_error(name: str, response: Response) -> HttpStatusError:
    """An UpstreamError naming the status and a short reason."""
    status = response.status
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    reason = _REASONS.get(status) or phrase
    return HttpStatusError(f"upstream {name!r} answered HTTP {status} ({reason})", status)


def transport_error(name: str, url: str, exc: H1Error) -> UpstreamError:
    """An UpstreamError for a request that got no complete HTTP answer."""
    if isinstance(exc, H1ConnectError):
        return UpstreamError(f"upstream {name!r}: cannot connect to {url} ({exc})")
    return UpstreamError(f"upstream {name!r}: HTTP request to {url} failed: {exc}")
