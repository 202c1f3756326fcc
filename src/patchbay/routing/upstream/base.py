"""The seam between the gateway and an upstream MCP server, whatever its transport or era.

Messages travel as plain dicts decoded by orjson: results pass through unchanged
(content, structuredContent, isError, _meta and anything a newer spec adds).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from patchbay.jsonrpc_types import JSONObject

Transport = Literal["stdio", "streamable_http", "sse"]

# Which protocol era to speak upstream: "auto" probes server/discover and falls back to initialize.
Era = Literal["auto", "modern", "legacy"]

# What the gateway tells upstreams about itself.
GATEWAY_CLIENT_INFO: JSONObject = {"name": "patchbay", "version": "0.1.0"}


class CallAuth(Protocol):
    """Credentials fetched per request (an OAuth bearer) for an HTTP upstream's connection."""

    async def authorization(self) -> str:
        """The ``Authorization`` header value to send now."""
        ...

    async def rejected(self, value: str) -> None:
        """The upstream answered 401 to ``value``: get a new one (the request is retried once)."""
        ...


@dataclass(frozen=True)
class UpstreamSpec:
    """How to reach one upstream. ``key`` identifies a pooled connection (template + credential set)."""

    key: str
    name: str
    transport: Transport
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    era: Era = "auto"
    # Set for OAuth upstreams only; other specs keep the plain (unwrapped) HTTP client.
    auth: CallAuth | None = field(default=None, compare=False, repr=False)


StreamState = Literal["open", "paused"]


class MessageSink(Protocol):
    """Where an upstream's messages about one in-flight request go (the downstream client's stream)."""

    async def notification(self, message: JSONObject) -> None:
        """A notification tied to the request: progress, log message."""

    async def request(self, message: JSONObject) -> JSONObject:
        """A server→client request (sampling, elicitation, roots); returns the JSON-RPC response."""

    def upstream_stream(self, state: StreamState) -> None:
        """The upstream answers on an event stream (``open``), or closed it to be polled (``paused``)."""


# Connection-level notifications (list_changed, resources/updated, unsolicited log messages).
NotificationHandler = Callable[[str, JSONObject], Awaitable[None]]


class UpstreamConnection(Protocol):
    """One live connection to an upstream; safe for many concurrent requests."""

    spec: UpstreamSpec
    protocol_version: str
    server_info: JSONObject
    capabilities: JSONObject
    instructions: str | None

    @property
    def closed(self) -> bool: ...

    async def request(
        self,
        method: str,
        params: JSONObject | None,
        *,
        timeout: float,  # noqa: ASYNC109 - the connection must know it to cancel upstream
        sink: MessageSink | None = None,
    ) -> JSONObject:
        """Send a request; return the JSON-RPC response object (with ``result`` or ``error``).

        Raises ``UpstreamTimeout`` after ``timeout`` seconds (and tells the upstream
        the request is cancelled) and ``UpstreamError`` when the upstream crashes,
        closes, or answers something that is not JSON-RPC.
        """
        ...

    async def notify(self, method: str, params: JSONObject | None = None) -> None: ...

    async def aclose(self) -> None: ...
