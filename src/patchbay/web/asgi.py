"""Small raw-ASGI helpers for the hot path (no Request/Response objects per call)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import orjson
from starlette.types import Receive, Scope, Send

from patchbay.jsonrpc_types import JSONObject

T = TypeVar("T")

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),
]


class BodyTooLarge(Exception):
    pass


def header_map(scope: Scope) -> dict[str, str]:
    """Lower-case header name → value (the last one wins; duplicates are checked separately).

    Names repeat from request to request, so each is decoded once per process (a bounded cache):
    a third off the cost of the map, which every MCP request builds.
    """
    names = _HEADER_NAMES
    out: dict[str, str] = {}
    for key, value in scope["headers"]:
        name = names.get(key)
        if name is None:
            name = key.decode("latin-1")
            if len(names) < 512:
                names[key] = name
        out[name] = value.decode("latin-1")
    return out


_HEADER_NAMES: dict[bytes, str] = {}


def duplicated(scope: Scope, names: frozenset[bytes]) -> str | None:
    seen: set[bytes] = set()
    key: bytes
    for key, _ in scope["headers"]:
        if key in names:
            if key in seen:
                return key.decode()
            seen.add(key)
    return None


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    hdrs = list(headers or JSON_HEADERS)
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, payload: Any, extra: list[tuple[bytes, bytes]] | None = None) -> int:
    body = orjson.dumps(payload)
    await send_bytes(send, status, body, JSON_HEADERS + (extra or []))
    return len(body)


def sse_event(message: JSONObject) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"


async def until_disconnect(receive: Receive) -> None:
    """Return when the client has gone away (a long-lived stream's watchdog)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def next_before(iterator: AsyncIterator[T], gone: asyncio.Future[None], seconds: float) -> T | None:
    """The iterator's next item, or None when the client went away (``gone`` is done) or ``seconds`` passed."""
    nxt = asyncio.ensure_future(iterator.__anext__())
    waiters: set[asyncio.Future[Any]] = {nxt, gone}
    done, _ = await asyncio.wait(waiters, timeout=seconds, return_when="FIRST_COMPLETED")
    if nxt in done:
        return nxt.result()
    nxt.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await nxt
    return None
