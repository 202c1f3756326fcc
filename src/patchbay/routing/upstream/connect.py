"""Open a connection to an upstream with whichever transport its spec names."""

from __future__ import annotations

from patchbay.errors import UpstreamError
from patchbay.routing.upstream.base import NotificationHandler, UpstreamConnection, UpstreamSpec
from patchbay.routing.upstream.h1 import H1Pool
from patchbay.routing.upstream.http import HttpConnection
from patchbay.routing.upstream.sse import SseConnection
from patchbay.routing.upstream.stdio import StdioConnection


async def open_connection(
    spec: UpstreamSpec,
    *,
    client: H1Pool | None,
    connect_timeout: float,
    on_notification: NotificationHandler | None = None,
) -> UpstreamConnection:
    """Connect to ``spec`` and negotiate the protocol; ``client`` serves the HTTP transports."""
    if spec.transport == "stdio":
        return await StdioConnection.open(spec, connect_timeout=connect_timeout, on_notification=on_notification)
    if client is None:
        raise UpstreamError(f"upstream {spec.name!r}: no HTTP client for transport {spec.transport}")
    if spec.transport == "streamable_http":
        return await HttpConnection.open(
            spec, client=client, connect_timeout=connect_timeout, on_notification=on_notification
        )
    return await SseConnection.open(
        spec, client=client, connect_timeout=connect_timeout, on_notification=on_notification
    )
