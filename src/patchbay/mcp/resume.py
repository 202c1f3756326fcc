"""Resumable response streams for 2025-11-25 clients (SEP-1699).

When a legacy request's response becomes an SSE stream, the first event is a
*priming* event: an id with empty data and a ``retry`` hint, so a client that
loses the connection knows where to resume. Every later event carries an id
``{stream}.{seq}`` and is also kept in the shared store for a few minutes. A
client that reconnects with ``GET`` + ``Last-Event-ID`` (on any replica) gets
the events it missed, then the rest as they happen, up to the final response.

Only the stream's own session may resume it; an unknown or foreign id is
refused rather than guessed at.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets

import orjson
from starlette.types import Receive, Send

from patchbay.jsonrpc_types import JSONObject
from patchbay.state.base import SharedStore
from patchbay.web.asgi import SSE_HEADERS, until_disconnect

RETRY_MS = 1000
KEEP_SECONDS = 300.0
KEEPALIVE_SECONDS = 15.0
# Priming events carry empty data, which clients older than 2025-11-25 may not expect.
FIRST_RESUMABLE_VERSION = "2025-11-25"

_FINAL = b"F"
_MORE = b"M"


def _event_key(stream: str, seq: int) -> str:
    return f"sse:{stream}:{seq}"


def _owner_key(stream: str) -> str:
    return f"sse:{stream}:owner"


def _updates_channel(stream: str) -> str:
    return f"sse:{stream}"


def resumable(protocol_version: str) -> bool:
    """Whether a client of this protocol version gets priming events and event ids."""
    return protocol_version >= FIRST_RESUMABLE_VERSION


def _frame(stream: str, seq: int, data: bytes) -> bytes:
    return b"event: message\nid: " + f"{stream}.{seq}".encode() + b"\ndata: " + data + b"\n\n"


class StreamLog:
    """The record of one response stream, written as its events are sent."""

    def __init__(self, store: SharedStore, *, session_id: str) -> None:
        self.stream = secrets.token_urlsafe(12)
        self._store = store
        self._session_id = session_id
        self._seq = 0

    async def priming(self) -> bytes:
        """The first event of the stream: an id to resume from, no data, and the retry hint."""
        await self._store.set(_owner_key(self.stream), self._session_id.encode(), ttl=KEEP_SECONDS)
        return f"id: {self.stream}.0\nretry: {RETRY_MS}\ndata: \n\n".encode()

    async def event(self, message: JSONObject, *, final: bool = False) -> bytes:
        """Keep the message for a resuming client and return its SSE frame."""
        self._seq += 1
        data = orjson.dumps(message)
        await self._store.set(_event_key(self.stream, self._seq), (_FINAL if final else _MORE) + data, ttl=KEEP_SECONDS)
        await self._store.expire(_owner_key(self.stream), KEEP_SECONDS)
        await self._store.publish(_updates_channel(self.stream), str(self._seq).encode())
        return _frame(self.stream, self._seq, data)


def parse_event_id(value: str) -> tuple[str, int] | None:
    """``{stream}.{seq}`` → (stream, seq), or None for an id this gateway did not issue."""
    stream, sep, seq = value.rpartition(".")
    if not sep or not stream or not seq.isdigit():
        return None
    return stream, int(seq)


async def owns(store: SharedStore, stream: str, session_id: str) -> bool:
    """Whether the stream exists and belongs to this session."""
    owner = await store.get(_owner_key(stream))
    return owner is not None and secrets.compare_digest(owner, session_id.encode())


async def replay(store: SharedStore, stream: str, after: int, receive: Receive, send: Send) -> int:
    """Send the events after ``after``, then follow the live ones until the final response or a disconnect."""
    written = 0
    seq = after + 1
    async with store.subscribe(_updates_channel(stream)) as updates:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        gone = asyncio.ensure_future(until_disconnect(receive))
        iterator = updates.__aiter__()
        try:
            while not gone.done():
                raw = await store.get(_event_key(stream, seq))
                if raw is not None:
                    chunk = _frame(stream, seq, raw[1:])
                    written += len(chunk)
                    final = raw[:1] == _FINAL
                    await send({"type": "http.response.body", "body": chunk, "more_body": not final})
                    if final:
                        return written
                    seq += 1
                    continue
                # Nothing new yet: wait for the writer to announce one (the subscription predates the read).
                nxt = asyncio.ensure_future(iterator.__anext__())
                done, _ = await asyncio.wait({nxt, gone}, timeout=KEEPALIVE_SECONDS, return_when="FIRST_COMPLETED")
                if nxt not in done:
                    nxt.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await nxt
                    if not done:
                        if await store.get(_owner_key(stream)) is None:
                            break  # the writer went away or the stream expired: nothing more will come
                        await send({"type": "http.response.body", "body": b": keepalive\n\n", "more_body": True})
        finally:
            gone.cancel()
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    return written
