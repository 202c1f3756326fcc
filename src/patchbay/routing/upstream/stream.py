"""The request side of connections whose messages all travel over one duplex stream (stdio, legacy SSE)."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from patchbay.errors import UpstreamError, UpstreamTimeout
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import MessageSink, NotificationHandler, Transport, UpstreamSpec
from patchbay.routing.upstream.jsonrpc_client import RpcCore
from patchbay.routing.upstream.protocol import (
    REQUEST_TIMEOUT,
    Negotiated,
    envelope,
    negotiate,
    stamp_modern,
    strip_envelope,
)

# The spec forbids cancelling the negotiation requests.
_UNCANCELLABLE = frozenset({"initialize", "server/discover"})


class StreamConnection:
    """Requests, notifications and era negotiation where every reply arrives on one stream."""

    transport: ClassVar[Transport]

    def __init__(self, spec: UpstreamSpec, on_notification: NotificationHandler | None) -> None:
        self.spec = spec
        self.protocol_version = ""
        self.server_info: JSONObject = {}
        self.capabilities: JSONObject = {}
        self.instructions: str | None = None
        self._core = RpcCore(spec.name, self._write, on_notification)
        self._envelope: JSONObject | None = None
        self._error: UpstreamError | None = None

    @property
    def closed(self) -> bool:
        return self._error is not None

    async def _write(self, message: JSONObject) -> None:
        """Put one message on the wire; raise UpstreamError if the transport is gone."""
        raise NotImplementedError

    def _hint(self) -> str:
        """What the upstream did wrong lately, for a timeout message."""
        return f" ({self._core.anomaly})" if self._core.anomaly else ""

    def _mark_dead(self, error: UpstreamError) -> None:
        """Record why the connection ended and fail every waiting request with it."""
        if self._error is None:
            self._error = error
            self._core.fail_all(error)

    async def request(
        self,
        method: str,
        params: JSONObject | None,
        *,
        timeout: float,  # noqa: ASYNC109 - the connection must know it to cancel upstream
        sink: MessageSink | None = None,
    ) -> JSONObject:
        """Send a request and wait for its JSON-RPC response (see ``UpstreamConnection.request``)."""
        if self._envelope is not None:
            params = stamp_modern(params, self._envelope)
        elif params is not None and "_meta" in params:
            params = strip_envelope(params)
        return await self._roundtrip(method, params, timeout, sink)

    async def _roundtrip(
        self, method: str, params: JSONObject | None, seconds: float, sink: MessageSink | None
    ) -> JSONObject:
        if self._error is not None:
            raise self._error
        rid, pending, params = self._core.open(method, params, sink, future=True)
        message: JSONObject = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        future = pending.future
        assert future is not None
        # A bare timer on the future: asyncio.timeout() costs a measurable share of a proxied call.
        loop = asyncio.get_running_loop()
        timer = loop.call_at(loop.time() + seconds, _expire, future)
        try:
            await self._write(message)
            return await future
        except _Expired:
            self._cancel_upstream(rid, method, "timed out")
            raise UpstreamTimeout(
                f"upstream {self.spec.name!r} did not answer {method} within {seconds:g} s{self._hint()}"
            ) from None
        except asyncio.CancelledError:
            self._cancel_upstream(rid, method, "the client went away")
            raise
        finally:
            timer.cancel()
            self._core.close(rid)

    def _cancel_upstream(self, rid: int, method: str, reason: str) -> None:
        if method in _UNCANCELLABLE or self._error is not None:
            return
        # In the background: the caller's error must not wait on a congested pipe.
        self._core.spawn(self.notify("notifications/cancelled", {"requestId": rid, "reason": reason}))

    async def notify(self, method: str, params: JSONObject | None = None) -> None:
        """Send a notification upstream."""
        if self._envelope is not None:
            params = stamp_modern(params, self._envelope)
        message: JSONObject = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._write(message)

    async def _handshake(self, probe_seconds: float, seconds: float) -> None:
        """Negotiate the era and record what the server said about itself."""

        async def call(method: str, params: JSONObject) -> JSONObject:
            if method != "server/discover":
                return await self._roundtrip(method, params, seconds, None)
            try:
                return await self._roundtrip(method, params, probe_seconds, None)
            except UpstreamTimeout:
                # A server that ignores unknown methods never answers the probe: treat it as legacy.
                return {"error": {"code": REQUEST_TIMEOUT, "message": "server/discover timed out"}}

        self._adopt(await negotiate(self.spec.name, self.spec.era, call))
        if self._envelope is None:
            await self.notify("notifications/initialized")

    def _adopt(self, negotiated: Negotiated) -> None:
        self.protocol_version = negotiated.protocol_version
        self.server_info = negotiated.server_info
        self.capabilities = negotiated.capabilities
        self.instructions = negotiated.instructions
        self._envelope = envelope(negotiated.protocol_version) if negotiated.modern else None
        self._core.request_scoped_logs = negotiated.modern


class _Expired(Exception):
    """Set on a request's future when its time is up."""


def _expire(future: asyncio.Future[JSONObject]) -> None:
    if not future.done():
        future.set_exception(_Expired())
