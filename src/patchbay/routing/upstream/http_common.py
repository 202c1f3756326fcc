"""What the two HTTP transports share: a server-sent-events reader, the HTTP client, error wording."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from patchbay.errors import UpstreamError, UpstreamTimeout

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


async def iter_events(response: httpx.Response) -> AsyncIterator[ServerEvent]:
    """Parse a ``text/event-stream`` body into events (retry fields and comments are ignored)."""
    event = ""
    data: list[str] = []
    last_id: str | None = None
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield ServerEvent(event or "message", "\n".join(data), last_id)
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


def parse_url(name: str, url: str | None) -> httpx.URL:
    """The upstream's URL, parsed once (httpx would parse a string on every request)."""
    try:
        parsed = httpx.URL(url or "")
    except httpx.InvalidURL as exc:
        raise UpstreamError(f"upstream {name!r} has an invalid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise UpstreamError(f"upstream {name!r} needs an http(s) URL, not {url!r}")
    return parsed


def make_client(connect_timeout: float) -> httpx.AsyncClient:
    """The HTTP client one pool shares across upstreams (pooled keep-alive connections)."""
    # No read timeout: every call carries its own deadline and event streams idle for long.
    timeout = httpx.Timeout(connect=connect_timeout, read=None, write=connect_timeout, pool=connect_timeout)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)
    return httpx.AsyncClient(timeout=timeout, limits=limits, follow_redirects=False)


def status_error(name: str, response: httpx.Response) -> HttpStatusError:
    """An UpstreamError naming the status and a short reason."""
    status = response.status_code
    reason = _REASONS.get(status) or response.reason_phrase or "error"
    return HttpStatusError(f"upstream {name!r} answered HTTP {status} ({reason})", status)


def transport_error(name: str, url: str, exc: httpx.HTTPError) -> UpstreamError:
    """An UpstreamError for a request that got no HTTP answer at all."""
    if isinstance(exc, httpx.ConnectError):
        return UpstreamError(f"upstream {name!r}: cannot connect to {url} ({exc or 'connection refused'})")
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"upstream {name!r}: timed out talking to {url} ({type(exc).__name__})")
    return UpstreamError(f"upstream {name!r}: HTTP request to {url} failed: {type(exc).__name__}: {exc}")
