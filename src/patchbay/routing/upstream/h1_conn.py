"""One HTTP/1.1 connection (an asyncio Protocol fed to the httptools parser) and its responses."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Final, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from patchbay.routing.upstream.h1_errors import H1BodyTooLargeError, H1ClosedError, H1Error, H1ProtocolError
from patchbay.routing.upstream.h1_request import URL

# An unconsumed body above HIGH_WATER pauses the socket; it resumes once drained to LOW_WATER.
HIGH_WATER: Final = 1 << 20
LOW_WATER: Final = HIGH_WATER // 4


class Response:
    """An HTTP response whose head has arrived; the body streams in behind it."""

    __slots__ = (
        "_body",
        "_buffered",
        "_chunks",
        "_conn",
        "_done",
        "_error",
        "_waiter",
        "headers",
        "status",
        "url",
    )

    def __init__(self, conn: Connection) -> None:
        self.url = conn.url
        self.status = 0  # set when the head is complete
        self.headers: dict[str, str] = {}
        self._conn: Connection | None = conn  # None once the body is complete or the response closed
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: H1Error | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: bytes | None = None

    def __repr__(self) -> str:
        return f"<Response {self.status} from {self.url.origin}>"

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet consumed (reading pauses above about 1 MiB)."""
        return self._buffered

    async def read(self, max_size: int | None = None) -> bytes:
        """The whole body; ``H1BodyTooLargeError`` (and the connection closed) past ``max_size`` bytes."""
        if self._body is not None:
            return self._body
        if self._done and self._error is None:
            chunks = self._chunks
            body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            chunks.clear()
            self._buffered = 0
            if max_size is not None and len(body) > max_size:
                raise self._too_large(max_size)
        else:
            parts: list[bytes] = []
            size = 0
            while (chunk := await self._next()) is not None:
                parts.append(chunk)
                size += len(chunk)
                if max_size is not None and size > max_size:
                    self._discard()
                    raise self._too_large(max_size)
            body = b"".join(parts)
        self._body = body
        return body

    async def stream(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive; leaving the loop early closes the connection."""
        if self._body is not None:
            if self._body:
                yield self._body
            return
        try:
            while (chunk := await self._next()) is not None:
                yield chunk
        finally:
            self._discard()

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The same as ``stream()``, under httpx's name."""
        return self.stream()

    async def aclose(self) -> None:
        """Release the response; a body still arriving closes the connection (it is never reused)."""
        self._discard()

    def close(self) -> None:
        """``aclose()`` without the coroutine, for callers on the hot path."""
        self._discard()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._discard()

    async def _next(self) -> bytes | None:
        """The next body chunk, or None at the end of the body."""
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return None
            conn = self._conn
            assert conn is not None
            waiter = self._waiter = conn.loop.create_future()
            try:
                await waiter
            except BaseException:
                self._discard()  # cancelled mid-body: the rest of the body would poison the connection
                raise
            finally:
                self._waiter = None
        chunk = chunks.popleft()
        self._buffered -= len(chunk)
        conn = self._conn
        if conn is not None and conn.paused and self._buffered <= LOW_WATER:
            conn.resume()
        return chunk

    def _discard(self) -> None:
        """Give up on the rest of the body: its connection closes."""
        if self._done:
            return
        origin = self.url.origin
        error = H1ClosedError(f"the response from {origin} was closed before its body was read", origin)
        conn = self._conn
        if conn is not None:
            conn.abort(error)  # finishes this response with ``error``
        if not self._done:
            self._finish(error)

    def _too_large(self, max_size: int) -> H1BodyTooLargeError:
        origin = self.url.origin
        return H1BodyTooLargeError(f"the response body from {origin} exceeds {max_size} bytes", origin)

    # Called by the connection.

    def _feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        conn = self._conn
        if self._buffered > HIGH_WATER and conn is not None and not conn.paused:
            conn.pause()

    def _finish(self, error: H1Error | None = None) -> None:
        self._done = True
        self._error = error
        self._conn = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class StaleConnection(Exception):
    """A reused connection closed before any byte of the response: safe to send again."""


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; the parser calls back into it as bytes arrive."""

    __slots__ = (
        "_head_waiter",
        "_headers",
        "_informational",
        "_no_body",
        "_on_closed",
        "_on_reusable",
        "_parser",
        "_received",
        "_resp",
        "closed",
        "idle_since",
        "loop",
        "lost",
        "paused",
        "transport",
        "url",
        "uses",
    )

    def __init__(
        self,
        url: URL,
        loop: asyncio.AbstractEventLoop,
        *,
        on_reusable: Callable[[Connection], None],
        on_closed: Callable[[Connection], None],
    ) -> None:
        self.url = url
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = HttpResponseParser(self)
        self._resp: Response | None = None  # the response in flight
        self._headers: dict[str, str] | None = None  # its headers while the head is being parsed
        self._head_waiter: asyncio.Future[None] | None = None
        self._received = False  # any byte of the current response
        self._no_body = False  # the request was HEAD
        self._informational = False
        self._on_reusable = on_reusable  # the response is complete and the connection may serve another
        self._on_closed = on_closed  # called once, when the connection starts closing
        self.closed = False
        self.paused = False
        self.uses = 0
        self.idle_since = -1.0  # the pool's: >= 0 exactly while in its idle list
        self.lost: asyncio.Future[None] = loop.create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's do not subclass asyncio.Transport, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._resp is None:
            # Nothing was asked: a server's parting 408, or garbage. Never reuse this connection.
            self.abort()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            origin = self.url.origin
            self._fail(H1ProtocolError(f"{origin} switched protocols unasked", origin))
        except HttpParserError as exc:
            origin = self.url.origin
            self._fail(H1ProtocolError(f"malformed HTTP response from {origin}: {exc}", origin))

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost decides what the EOF meant

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._mark_closed()
        if not self.lost.done():
            self.lost.set_result(None)
        resp = self._resp
        if resp is None:
            return
        origin = self.url.origin
        reason = f" ({exc})" if exc is not None else ""
        if resp.status == 0:
            if not self._received and self.uses > 1:
                self._fail(StaleConnection())
            else:
                where = "in the middle of the response head" if self._received else "without answering"
                self._fail(H1ClosedError(f"{origin} closed the connection {where}{reason}", origin))
        elif self._close_delimited(resp):
            self._complete(keep_alive=False)
        else:
            self._fail(H1ClosedError(f"{origin} closed the connection in the middle of the body{reason}", origin))

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._resp is None:
            # A message nobody asked for, right behind a complete one in the same read: were the
            # connection reused, its tail would be taken for the next response.
            self.abort()

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if headers is None:
            return  # a trailer
        key = name.decode("latin-1").lower()
        old = headers.get(key)
        headers[key] = value.decode("latin-1") if old is None else f"{old}, {value.decode('latin-1')}"

    def on_headers_complete(self) -> None:
        resp = self._resp
        if resp is None:
            return
        status = self._parser.get_status_code()
        if status < 200:
            # 1xx (100 Continue, 103 Early Hints): the real response follows on the same connection.
            self._informational = True
            resp.headers.clear()
            return
        resp.status = status
        self._headers = None
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._no_body:
            # llhttp cannot be told the request was HEAD and would wait for a body: finish here and
            # give the next response a fresh parser.
            keep_alive = self._parser.should_keep_alive()
            self._parser = HttpResponseParser(self)
            self._complete(keep_alive)

    def on_body(self, body: bytes) -> None:
        resp = self._resp
        if resp is None:
            self.abort()  # bytes after a HEAD response's head
            return
        resp._feed(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
        elif self._resp is not None:
            self._complete(self._parser.should_keep_alive())

    # Used by the pool and the response.

    async def send(self, data: bytes, resp: Response, head_only: bool) -> None:
        """Write a request and wait for the head of its response."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            if self.uses:
                raise StaleConnection
            raise H1ClosedError(f"{self.url.origin} closed the connection at once", self.url.origin)
        self.uses += 1
        self._resp = resp
        self._headers = resp.headers
        self._received = False
        self._no_body = head_only
        waiter = self._head_waiter = self.loop.create_future()
        transport.write(data)
        try:
            await waiter
        except BaseException:
            # Cancelled or failed. While the connection still carries this response, what arrives
            # later must not reach another request; once the response is complete, the connection
            # may already serve the next caller and is none of ours.
            if self._resp is resp:
                self.abort()
            raise
        finally:
            # The same goes for the waiter: by the time we resume, it may be the next caller's.
            if self._head_waiter is waiter:
                self._head_waiter = None

    def pause(self) -> None:
        if self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        self.paused = False
        if self.transport is not None:
            self.transport.resume_reading()

    def abort(self, error: H1Error | None = None) -> None:
        """Close now, never to be reused; a response in flight fails with ``error``."""
        self._mark_closed()
        if self.transport is not None:
            self.transport.abort()
        if self._resp is not None:
            origin = self.url.origin
            self._fail(error or H1ClosedError(f"the connection to {origin} was closed", origin))

    def close(self) -> None:
        """Close an idle connection politely."""
        self._mark_closed()
        if self.transport is not None:
            self.transport.close()

    def _mark_closed(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_closed(self)

    def _close_delimited(self, resp: Response) -> bool:
        # Without Content-Length or chunked framing, a response body runs until the server closes.
        headers = resp.headers
        framing = headers.get("transfer-encoding", "")
        return "content-length" not in headers and not framing.lower().endswith("chunked")

    def _complete(self, keep_alive: bool) -> None:
        resp = self._resp
        assert resp is not None
        self._resp = self._headers = None
        resp._finish()
        if self.closed:
            return
        if keep_alive:
            if self.paused:
                self.resume()
            self._on_reusable(self)
        else:
            self.close()

    def _fail(self, error: Exception) -> None:
        """End the response in flight with ``error`` and close the connection."""
        resp = self._resp
        self._resp = self._headers = None
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        if resp is not None and isinstance(error, H1Error):
            resp._finish(error)
        if not self.closed:
            self.abort()
