"""Resource subscriptions of legacy clients, kept with upstreams of either era.

A 2025-11-25 upstream takes ``resources/subscribe`` as is. A 2026-07-28 upstream has no
such method: the gateway holds one ``subscriptions/listen`` stream per upstream
connection, for the union of URIs this process was asked to watch, and reopens it when
the set grows. Either way, ``notifications/resources/updated`` reaches the gateway's
event relay, which publishes it to every client session of the servers that route there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from patchbay.errors import UpstreamError
from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.protocol import MODERN_VERSIONS
from patchbay.routing.upstream.base import StreamState, UpstreamSpec
from patchbay.routing.upstream.pool import UpstreamPool

logger = logging.getLogger(__name__)

EventRelay = Callable[[str, str, JSONObject], Awaitable[None]]
_LISTEN_SECONDS = 24 * 3600.0


class _ListenSink:
    """Receives what an upstream sends on a listen stream."""

    def __init__(self, spec_key: str, relay: EventRelay) -> None:
        self._key = spec_key
        self._relay = relay

    async def notification(self, message: JSONObject) -> None:
        method = message.get("method")
        params = message.get("params")
        if isinstance(method, str) and method != "notifications/subscriptions/acknowledged":
            await self._relay(self._key, method, params if isinstance(params, dict) else {})

    def upstream_stream(self, state: StreamState) -> None:
        pass  # a listen stream is read to its end whatever shape it takes

    async def request(self, message: JSONObject) -> JSONObject:
        return {
            "jsonrpc": "2.0",
            "id": message.get("id"),
            "error": {"code": -32601, "message": "not supported"},
        }


class ResourceWatcher:
    def __init__(self, pool: UpstreamPool, relay: EventRelay) -> None:
        self._pool = pool
        self._relay = relay
        self._uris: dict[str, set[str]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @staticmethod
    def needs_listen(protocol_version: str | None) -> bool:
        return protocol_version in MODERN_VERSIONS

    def watch(self, spec: UpstreamSpec, uri: str) -> None:
        """Make sure updates of ``uri`` from the upstream at ``spec`` are relayed."""
        uris = self._uris.setdefault(spec.key, set())
        if uri in uris:
            return
        uris.add(uri)
        old = self._tasks.pop(spec.key, None)
        if old is not None:
            old.cancel()
        self._tasks[spec.key] = asyncio.create_task(self._listen(spec, sorted(uris)))

    async def _listen(self, spec: UpstreamSpec, uris: list[str]) -> None:
        params: JSONObject = {"notifications": {"resourceSubscriptions": uris}}
        sink = _ListenSink(spec.key, self._relay)
        delay = 0.5
        while True:
            try:
                await self._pool.request(spec, "subscriptions/listen", params, timeout=_LISTEN_SECONDS, sink=sink)
                delay = 0.5
            except UpstreamError as exc:
                logger.warning("resource listen stream to %r ended: %s; retrying in %.1fs", spec.name, exc, delay)
                delay = min(delay * 2, 30.0)
            await asyncio.sleep(delay)

    async def aclose(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
