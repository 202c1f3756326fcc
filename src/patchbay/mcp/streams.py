"""Long-lived server→client streams: the legacy GET stream and 2026-07-28 ``subscriptions/listen``.

Messages for a stream arrive through the shared store's pub/sub, so whichever
replica holds the client's connection delivers what any replica published.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
from starlette.types import Receive, Send

from patchbay.auth.principal import Principal
from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.exchange import Outcome
from patchbay.mcp.live import KIND_CAPABILITY, PROMPTS, RESOURCES, TOOLS, Listener, Wrap, plain, upstream_ids
from patchbay.mcp.protocol import INVALID_REQUEST, META_SUBSCRIPTION_ID
from patchbay.mcp.session import LegacySession, server_events_channel
from patchbay.routing.catalog import Catalog
from patchbay.web.asgi import SSE_HEADERS, sse_event, until_disconnect

if TYPE_CHECKING:
    from patchbay.mcp.context import RequestContext
    from patchbay.runtime import Gateway

KEEPALIVE_SECONDS = 15.0


# Turns a message published on the stream's channels into what the client gets (None: skip it).
Accept = Callable[[bytes], Awaitable[bytes | None]]


async def _pump(
    send: Send,
    channels: list[str],
    gw: Gateway,
    first: list[JSONObject],
    receive: Receive,
    accept: Accept | None,
    local: Listener | None = None,
    farewell: Callable[[str], JSONObject] | None = None,
) -> int:
    """Send ``first``, then every accepted message published on ``channels`` and every message put
    on ``local`` (this process's live changes), until the client goes away or ``local`` is ended
    (its key was revoked or expired: then ``farewell(reason)``, if given, is the last message)."""
    written = 0
    async with gw.store.subscribe(*channels) as messages:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        for message in first:
            chunk = sse_event(message)
            written += len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if not first:
            await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        gone = asyncio.ensure_future(until_disconnect(receive))
        ended = asyncio.ensure_future(local.ended.wait()) if local is not None else None
        iterator = messages.__aiter__()
        nxt: asyncio.Future[tuple[str, bytes]] | None = None
        mine: asyncio.Future[JSONObject] | None = None
        try:
            while not gone.done():
                if ended is not None and ended.done():
                    assert local is not None
                    if farewell is not None:
                        chunk = sse_event(farewell(local.reason))
                        written += len(chunk)
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    break
                if nxt is None:
                    nxt = asyncio.ensure_future(iterator.__anext__())
                if mine is None and local is not None:
                    mine = asyncio.ensure_future(local.queue.get())
                waiting = {f for f in (nxt, mine, gone, ended) if f is not None}
                done, _ = await asyncio.wait(waiting, timeout=KEEPALIVE_SECONDS, return_when="FIRST_COMPLETED")
                if ended is not None and ended in done:
                    continue
                if not done:
                    await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
                    continue
                raw: bytes | None = None
                if mine is not None and mine in done:
                    raw, mine = orjson.dumps(mine.result()), None
                elif nxt in done:
                    _channel, published = nxt.result()
                    nxt = None
                    raw = published if accept is None else await accept(published)
                if raw is not None:
                    chunk = b"event: message\ndata: " + raw + b"\n\n"
                    written += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            gone.cancel()
            if ended is not None:
                ended.cancel()
            for pending in (nxt, mine):
                if pending is not None:
                    pending.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await pending
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return written


async def serve_legacy_stream(
    gw: Gateway, session: LegacySession, principal: Principal, receive: Receive, send: Send, channel: str
) -> None:
    """The 2025-11-25 standalone GET stream of a session: its own messages, its server's events, live changes."""

    async def accept(raw: bytes) -> bytes | None:
        message = orjson.loads(raw)
        if message.get("method") != "notifications/resources/updated":
            return raw
        current = await gw.sessions.load(session.id)
        uri = (message.get("params") or {}).get("uri")
        return raw if current is not None and uri in current.subscriptions else None

    catalog = await gw.catalogs.get(principal.server_id, principal.server_revision)
    kinds = frozenset(m for m, cap in KIND_CAPABILITY.items() if cap in catalog.capabilities)
    listener = _listener(principal, catalog, kinds, plain)
    with gw.live.listen(listener) as local:
        # No JSON-RPC message fits an ended GET stream: it closes, and the client's next request learns why.
        await _pump(send, [channel, server_events_channel(session.server_id)], gw, [], receive, accept, local)


def _listener(principal: Principal, catalog: Catalog, kinds: frozenset[str], wrap: Wrap) -> Listener:
    return Listener(
        server_id=principal.server_id,
        key_id=principal.key_id,
        server_revision=catalog.revision,
        key_revision=principal.key_revision,
        upstreams=upstream_ids(catalog),
        kinds=kinds,
        wrap=wrap,
    )


def listen_channel(server_id: str) -> str:
    return f"mcp:listen:{server_id}"


# The subscriptions/listen filter field of each list-change notification.
_FILTER_FIELD = {TOOLS: "toolsListChanged", PROMPTS: "promptsListChanged", RESOURCES: "resourcesListChanged"}


async def serve_listen(ctx: RequestContext, params: JSONObject, send: Send, receive: Receive) -> Outcome:
    """``subscriptions/listen``: acknowledge what is honoured (list changes), then stream matching events.

    Resource-update subscriptions are not honoured on this stream, so the acknowledgement
    leaves them out and the client knows.
    """
    wanted = params.get("notifications")
    wanted = wanted if isinstance(wanted, dict) else {}
    kinds = frozenset(
        method
        for method, name in _FILTER_FIELD.items()
        if wanted.get(name) is True and KIND_CAPABILITY[method] in ctx.catalog.capabilities
    )
    meta: JSONObject = {META_SUBSCRIPTION_ID: ctx.request_id}
    ack: JSONObject = {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": {_FILTER_FIELD[m]: True for m in sorted(kinds)}, "_meta": meta},
    }

    def wrap(method: str) -> JSONObject:
        return {"jsonrpc": "2.0", "method": method, "params": {"_meta": meta}}

    async def accept(raw: bytes) -> bytes | None:
        method = orjson.loads(raw).get("method")
        return orjson.dumps(wrap(method)) if method in kinds else None

    def farewell(reason: str) -> JSONObject:
        # An error response to the listen request ends the subscription, and says why.
        return {"jsonrpc": "2.0", "id": ctx.request_id, "error": {"code": INVALID_REQUEST, "message": reason}}

    channels = [listen_channel(ctx.catalog.server_id), server_events_channel(ctx.catalog.server_id)]
    listener = _listener(ctx.principal, ctx.catalog, kinds, wrap)
    with ctx.gateway.live.listen(listener) as local:
        written = await _pump(send, channels, ctx.gateway, [ack], receive, accept, local, farewell)
    return Outcome(200, written, None)
