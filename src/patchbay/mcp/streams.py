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

from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.exchange import Outcome
from patchbay.mcp.protocol import META_SUBSCRIPTION_ID
from patchbay.mcp.session import LegacySession, server_events_channel
from patchbay.web.asgi import SSE_HEADERS, next_before, sse_event, until_disconnect

if TYPE_CHECKING:
    from patchbay.mcp.context import RequestContext
    from patchbay.runtime import Gateway

KEEPALIVE_SECONDS = 15.0


Accept = Callable[[bytes], Awaitable[bool]]


async def _pump(
    send: Send,
    channels: list[str],
    gw: Gateway,
    first: list[JSONObject],
    receive: Receive,
    accept: Accept | None,
) -> int:
    """Send ``first`` then every accepted message published on ``channels`` until the client goes away."""
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
        iterator = messages.__aiter__()
        try:
            while not gone.done():
                item = await next_before(iterator, gone, KEEPALIVE_SECONDS)
                if item is not None:
                    _channel, raw = item
                    if accept is not None and not await accept(raw):
                        continue
                    chunk = b"event: message\ndata: " + raw + b"\n\n"
                    written += len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                elif not gone.done():
                    await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
        finally:
            gone.cancel()
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return written


async def serve_legacy_stream(gw: Gateway, session: LegacySession, receive: Receive, send: Send, channel: str) -> None:
    """The 2025-11-25 standalone GET stream of a session: its own messages and its server's events."""

    async def accept(raw: bytes) -> bool:
        message = orjson.loads(raw)
        if message.get("method") != "notifications/resources/updated":
            return True
        current = await gw.sessions.load(session.id)
        uri = (message.get("params") or {}).get("uri")
        return current is not None and uri in current.subscriptions

    await _pump(send, [channel, server_events_channel(session.server_id)], gw, [], receive, accept)


def listen_channel(server_id: str) -> str:
    return f"mcp:listen:{server_id}"


async def serve_listen(ctx: RequestContext, params: JSONObject, send: Send, receive: Receive) -> Outcome:
    """``subscriptions/listen``: acknowledge what is honoured, then stream matching events.

    Change notifications are not produced yet, so the honoured filter is empty;
    the stream stays open so clients can hold it without error.
    """
    ack: JSONObject = {
        "jsonrpc": "2.0",
        "method": "notifications/subscriptions/acknowledged",
        "params": {"notifications": {}, "_meta": {META_SUBSCRIPTION_ID: ctx.request_id}},
    }
    written = await _pump(send, [listen_channel(ctx.catalog.server_id)], ctx.gateway, [ack], receive, None)
    return Outcome(200, written, None)
