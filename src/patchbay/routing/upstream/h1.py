"""A lean HTTP/1.1 client for upstream calls: keep-alive pool, asyncio Protocol, httptools parser.

Why not httpx: on the proxy hot path httpx + httpcore + h11 + anyio cost about a third of the
gateway's CPU. This client does one dict lookup and a list pop to find a connection, one join
to build the request, and lets the C parser call back straight into the connection.

    pool = H1Pool()
    url = URL("http://127.0.0.1:9100/mcp")          # parse once, reuse for every call
    response = await pool.request("POST", url, {"content-type": "application/json"}, body)
    data = await response.read()                    # or: async for chunk in response.stream()

Rules this module keeps (the tests hold it to them):

* A connection goes back to the pool as soon as its response has been received in full and
  the server did not ask to close it (``Connection: close``, HTTP/1.0, a close-delimited
  body). The body is then in memory, so the caller may read it later without holding the
  connection. A response closed, cancelled or failed before that closes its connection.
* Stale keep-alive connections: when a connection taken from the idle pool is closed or
  reset by the server before a single byte of the response arrived, the request is sent
  again, once, on a newly opened connection, whatever the method. A server that closes an
  idle keep-alive connection never processed the request we raced it with; the residual
  risk, a server that read a full request, acted on it and then died without writing one
  byte, is accepted for the upstream MCP path, whose servers answer or fail loudly. A
  request on a new connection, or one that got any response byte, is never retried.
* Response headers are decoded as Latin-1, names lower-cased; a repeated field is joined
  with ``", "`` (RFC 9110 §5.3; lossy only for Set-Cookie, which a gateway does not use).
  Trailers of chunked bodies are dropped.
* The pool sets ``Host`` (from the URL) and ``Content-Length`` (when there is a body or the
  method carries one); callers must not pass them, nor ``Transfer-Encoding``.
* No read timeout of its own: callers bound each call with ``asyncio.timeout``; a
  cancelled call discards its connection. ``connect_timeout`` bounds opening a connection
  and, separately, waiting for a free one when ``max_per_origin`` are busy.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Final, TypeAlias
from urllib.parse import quote, urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

__all__ = [
    "URL",
    "H1BodyTooLargeError",
    "H1ClosedError",
    "H1ConnectError",
    "H1Error",
    "H1Pool",
    "H1ProtocolError",
    "Headers",
    "Response",
]

Headers: TypeAlias = Mapping[str, str] | list[tuple[bytes, bytes]]

# An unconsumed body above HIGH_WATER pauses the socket; it resumes once drained to LOW_WATER.
HIGH_WATER: Final = 1 << 20
LOW_WATER: Final = HIGH_WATER // 4

_NO_BODY_METHODS: Final = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# Characters quote() must leave alone in a request target: RFC 3986 reserved ones and '%'.
_TARGET_SAFE: Final = "!#$%&'()*+,/:;=?@[]~"


class H1Error(Exception):
    """Base of this client's errors; ``origin`` is the ``host:port`` the request went to."""

    def __init__(self, message: str, origin: str) -> None:
        super().__init__(message)
        self.origin = origin


class H1ConnectError(H1Error):
    """No connection: refused, unresolvable, TLS handshake failed, timed out, or no free slot."""


class H1ProtocolError(H1Error):
    """The server sent something that is not a valid HTTP/1.1 response."""


class H1ClosedError(H1Error):
    """The connection closed before the response was complete."""


class H1BodyTooLargeError(H1Error):
    """The body exceeded the ``max_size`` given to ``Response.read``."""


class URL:
    """An http(s) URL parsed once: origin, request target and the request line's fixed part."""

    __slots__ = ("_line_tail", "host", "host_header", "key", "origin", "port", "raw", "scheme", "target")

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"credentials in URLs are not supported, send a header instead: {url!r}")
        host = parts.hostname
        if not host:
            raise ValueError(f"URL has no host: {url!r}")
        port = parts.port or _DEFAULT_PORTS[scheme]
        target = quote(parts.path or "/", safe=_TARGET_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_TARGET_SAFE)
        named = f"[{host}]" if ":" in host else host
        self.raw = url
        self.scheme = scheme
        self.host = host
        self.port = port
        self.target = target
        self.host_header = named if port == _DEFAULT_PORTS[scheme] else f"{named}:{port}"
        self.origin = f"{named}:{port}"
        self.key = (scheme, host, port)
        self._line_tail = f" {target} HTTP/1.1\r\nhost: {self.host_header}\r\n"

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"URL({self.raw!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URL) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


def encode_request(method: str, url: URL, headers: Headers, body: bytes) -> bytes:
    """The request's bytes: request line, Host, the caller's headers, Content-Length, body."""
    with_length = bool(body) or method not in _NO_BODY_METHODS
    if isinstance(headers, list):
        parts = [method.encode("ascii"), url._line_tail.encode("ascii")]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        if with_length:
            parts += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n")
        parts += (b"\r\n", body)
        data = b"".join(parts)
        head_end = len(data) - len(body)
    else:
        text = [method, url._line_tail]
        for name, value in headers.items():
            text += (name, ": ", value, "\r\n")
        if with_length:
            text += ("content-length: ", str(len(body)), "\r\n")
        text.append("\r\n")
        try:
            head = "".join(text).encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("HTTP header names and values must be Latin-1 text") from None
        data = head + body if body else head
        head_end = len(head)
    # One line per header: a CR or LF inside a name or value would smuggle in a header of its own.
    lines = 3 + len(headers) + with_length
    if data.count(b"\n", 0, head_end) != lines or data.count(b"\r", 0, head_end) != lines:
        raise ValueError("HTTP header names and values must not contain CR or LF")
    return data


class Response:
    """An HTTP response whose head has arrived; the body streams in behind it."""

    __slots__ = ("_body", "_buffered", "_chunks", "_conn", "_done", "_error", "_waiter", "headers", "status")

    def __init__(self, conn: _Connection) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self._conn: _Connection | None = conn  # None once the body is complete or the response closed
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: H1Error | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._body: bytes | None = None

    def __repr__(self) -> str:
        return f"<Response {self.status}>"

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
            if not self._done:
                self._discard()

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The same as ``stream()``, under httpx's name."""
        return self.stream()

    async def aclose(self) -> None:
        """Release the response; a body still arriving closes the connection (it is never reused)."""
        if not self._done:
            self._discard()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

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
        conn, self._conn = self._conn, None
        if not self._done:
            self._done = True
            self._error = H1ClosedError("the response was closed before its body was read", "")
            if conn is not None:
                self._error.origin = conn.url.origin
                conn.abort()

    def _too_large(self, max_size: int) -> H1BodyTooLargeError:
        origin = self._error.origin if self._error is not None else ""
        return H1BodyTooLargeError(f"response body larger than {max_size} bytes", origin)

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


class _StaleConnection(Exception):
    """A reused connection closed before any byte of the response: safe to send again."""


class _Origin:
    """The connections of one (scheme, host, port)."""

    __slots__ = ("idle", "total", "waiters")

    def __init__(self) -> None:
        self.idle: list[_Connection] = []  # LIFO: the warmest connection is at the end
        self.total = 0  # open or opening connections, busy or idle
        self.waiters: deque[asyncio.Future[_Connection | None]] = deque()


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; the parser calls back into it as bytes arrive."""

    __slots__ = (
        "_head_waiter",
        "_in_body",
        "_informational",
        "_no_body",
        "_parser",
        "_received",
        "_resp",
        "_retired",
        "closed",
        "idle_since",
        "lost",
        "loop",
        "paused",
        "pool",
        "site",
        "transport",
        "url",
        "uses",
    )

    def __init__(self, pool: H1Pool, site: _Origin, url: URL, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.site = site
        self.url = url
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self._parser = HttpResponseParser(self)
        self._resp: Response | None = None
        self._head_waiter: asyncio.Future[None] | None = None
        self._received = False  # any byte of the current response
        self._in_body = False  # the current response's head is complete
        self._no_body = False  # the request was HEAD
        self._informational = False
        self._retired = False
        self.closed = False
        self.paused = False
        self.uses = 0
        self.idle_since = -1.0  # >= 0 while in the idle list
        self.lost: asyncio.Future[None] = loop.create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._resp is None:
            # Nothing asked for: a server's parting 408 or garbage. Never reuse this connection.
            self.abort()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail(H1ProtocolError(f"{self.url.origin} switched protocols unasked", self.url.origin))
        except HttpParserError as exc:
            self._fail(H1ProtocolError(f"malformed HTTP response from {self.url.origin}: {exc}", self.url.origin))

    def eof_received(self) -> bool | None:
        return None  # let the transport close; connection_lost sorts out what it means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        self.pool._retire(self)
        if not self.lost.done():
            self.lost.set_result(None)
        resp = self._resp
        if resp is None:
            return
        origin = self.url.origin
        reason = f": {exc}" if exc is not None else ""
        if not self._in_body:
            if not self._received and self.uses > 1:
                self._fail_head(_StaleConnection())
            else:
                what = "before sending a response" if not self._received else "in the middle of the response head"
                self._fail(H1ClosedError(f"{origin} closed the connection {what}{reason}", origin))
        elif self._close_delimited():
            self._complete(keep_alive=False)
        else:
            self._fail(H1ClosedError(f"{origin} closed the connection in the middle of the body{reason}", origin))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:
            return  # a trailer
        assert self._resp is not None
        headers = self._resp.headers
        key = name.decode("latin-1").lower()
        old = headers.get(key)
        headers[key] = value.decode("latin-1") if old is None else f"{old}, {value.decode('latin-1')}"

    def on_headers_complete(self) -> None:
        resp = self._resp
        assert resp is not None
        status = self._parser.get_status_code()
        if status < 200:
            # 1xx (100 Continue, 103 Early Hints): the real response follows on the same connection.
            self._informational = True
            resp.headers.clear()
            return
        resp.status = status
        self._in_body = True
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
            return
        if self._resp is not None:
            self._complete(self._parser.should_keep_alive())

    # Used by the pool and the response.

    async def send(self, data: bytes, resp: Response, head_only: bool) -> None:
        """Write a request and wait for the head of its response."""
        transport = self.transport
        if self.closed or transport is None or transport.is_closing():
            raise _StaleConnection if self.uses else H1ClosedError("connection closed", self.url.origin)
        self.uses += 1
        self.idle_since = -1.0
        self._resp = resp
        self._received = self._in_body = False
        self._no_body = head_only
        waiter = self._head_waiter = self.loop.create_future()
        transport.write(data)
        try:
            await waiter
        except BaseException:
            self.abort()  # cancelled or failed: whatever arrives later must not reach another request
            raise
        finally:
            self._head_waiter = None

    def pause(self) -> None:
        if self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        self.paused = False
        if self.transport is not None:
            self.transport.resume_reading()

    def abort(self) -> None:
        """Close now, without reuse; an in-flight response fails."""
        self.closed = True
        self.pool._retire(self)
        if self.transport is not None:
            self.transport.abort()
        if self._resp is not None:
            self._fail(H1ClosedError(f"connection to {self.url.origin} was closed", self.url.origin))

    def close(self) -> None:
        """Close an idle connection politely."""
        self.closed = True
        self.pool._retire(self)
        if self.transport is not None:
            self.transport.close()

    def _close_delimited(self) -> bool:
        # Without Content-Length or chunked framing, a response body runs until the server closes.
        assert self._resp is not None
        headers = self._resp.headers
        framing = headers.get("transfer-encoding", "")
        return "content-length" not in headers and not framing.lower().endswith("chunked")

    def _complete(self, keep_alive: bool) -> None:
        resp = self._resp
        assert resp is not None
        self._resp = None
        resp._finish()
        if keep_alive and not self.closed:
            if self.paused:
                self.resume()
            self.pool._release(self)
        elif not self.closed:
            self.close()

    def _fail(self, error: H1Error) -> None:
        resp, self._resp = self._resp, None
        if resp is None:
            return
        self._fail_head(error)
        resp._finish(error)
        if not self.closed:
            self.abort()

    def _fail_head(self, error: Exception) -> None:
        self._resp = None
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class H1Pool:
    """Keep-alive HTTP/1.1 connections per (scheme, host, port), reused most-recent first."""

    def __init__(
        self,
        *,
        max_per_origin: int = 100,
        idle_seconds: float = 30.0,
        connect_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_per_origin = max_per_origin
        self.idle_seconds = idle_seconds
        self.connect_timeout = connect_timeout
        self._ssl = ssl_context
        self._sites: dict[tuple[str, str, int], _Origin] = {}
        self._conns: set[_Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(self, method: str, url: URL | str, headers: Headers, body: bytes = b"") -> Response:
        """Send a request and return its response once the head has arrived (see the module doc)."""
        if not isinstance(url, URL):
            url = URL(url)
        data = encode_request(method, url, headers, body)
        head_only = method == "HEAD"
        site = self._sites.get(url.key)
        conn = self._pop_idle(site) if site is not None else None
        if conn is None:
            conn = await self._acquire(url, fresh=False)
        resp = Response(conn)
        try:
            await conn.send(data, resp, head_only)
        except _StaleConnection:
            conn = await self._acquire(url, fresh=True)
            resp = Response(conn)
            await conn.send(data, resp, head_only)
        return resp

    def stats(self) -> dict[str, int]:
        """Open connections and how many of them are idle."""
        idle = sum(len(site.idle) for site in self._sites.values())
        return {"connections": len(self._conns), "idle": idle}

    async def aclose(self) -> None:
        """Close every connection (in-flight responses fail with H1ClosedError)."""
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        if conns:
            await asyncio.gather(*(conn.lost for conn in conns))

    async def __aenter__(self) -> H1Pool:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _pop_idle(self, site: _Origin) -> _Connection | None:
        idle = site.idle
        while idle:
            conn = idle.pop()
            if conn.loop.time() - conn.idle_since > self.idle_seconds:
                # The newest has expired, so have all the others.
                conn.close()
                for old in list(idle):
                    old.close()
                return None
            if not conn.closed:
                conn.idle_since = -1.0
                return conn
        return None

    async def _acquire(self, url: URL, *, fresh: bool) -> _Connection:
        """A connection to ``url``'s origin: idle (unless ``fresh``), new, or handed over when one frees up."""
        if self._closed:
            raise H1ClosedError("the connection pool is closed", url.origin)
        site = self._sites.get(url.key)
        if site is None:
            site = self._sites[url.key] = _Origin()
        while True:
            if not fresh and (conn := self._pop_idle(site)) is not None:
                return conn
            if site.total < self.max_per_origin:
                site.total += 1
                return await self._connect(site, url)
            got = await self._wait(site, url)
            if got is None:
                return await self._connect(site, url)  # a slot was handed over
            if not got.closed:
                if not fresh:
                    return got
                got.close()  # frees the slot for the next waiter, possibly us

    async def _wait(self, site: _Origin, url: URL) -> _Connection | None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[_Connection | None] = loop.create_future()
        site.waiters.append(waiter)
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled():
                # Handed a connection or a slot just as we gave up: pass it on.
                got = waiter.result()
                if got is None:
                    self._free_slot(site)
                else:
                    self._release(got)
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise H1ConnectError(
                    f"no free connection to {url.origin} within {self.connect_timeout:g} s "
                    f"({self.max_per_origin} busy)",
                    url.origin,
                ) from None
            raise

    async def _connect(self, site: _Origin, url: URL) -> _Connection:
        """Open a connection in a slot already counted in ``site.total``."""
        loop = asyncio.get_running_loop()
        conn = _Connection(self, site, url, loop)
        context = None
        if url.scheme == "https":
            context = self._ssl or _default_context()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    url.host,
                    url.port,
                    ssl=context,
                    server_hostname=url.host if context is not None else None,
                )
        except BaseException as exc:
            conn._retired = True
            self._free_slot(site)
            if isinstance(exc, TimeoutError):
                raise H1ConnectError(
                    f"timed out connecting to {url.origin} after {self.connect_timeout:g} s", url.origin
                ) from None
            if isinstance(exc, OSError):  # refused, unreachable, DNS (gaierror), TLS (SSLError)
                raise H1ConnectError(f"cannot connect to {url.origin}: {exc}", url.origin) from exc
            raise
        self._conns.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        """A connection whose response is complete: to the next waiter, else to the idle list."""
        if self._closed:
            conn.close()
            return
        site = conn.site
        while site.waiters:
            waiter = site.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = conn.loop.time()
        site.idle.append(conn)
        if self._sweep is None:
            self._sweep = conn.loop.call_later(self.idle_seconds, self._sweep_idle, conn.loop)

    def _retire(self, conn: _Connection) -> None:
        """Forget a closing connection (once) and free its slot."""
        if conn._retired:
            return
        conn._retired = True
        self._conns.discard(conn)
        site = conn.site
        if conn.idle_since >= 0:
            conn.idle_since = -1.0
            site.idle.remove(conn)
        self._free_slot(site)

    def _free_slot(self, site: _Origin) -> None:
        while site.waiters:
            waiter = site.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter, which connects
                return
        site.total -= 1

    def _sweep_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweep = None
        deadline = loop.time() - self.idle_seconds
        oldest: float | None = None
        for site in self._sites.values():
            idle = site.idle
            while idle and idle[0].idle_since <= deadline:
                idle[0].close()  # removes it from the list
            if idle and (oldest is None or idle[0].idle_since < oldest):
                oldest = idle[0].idle_since
        if oldest is not None:
            delay = max(0.0, oldest + self.idle_seconds - loop.time())
            self._sweep = loop.call_later(delay, self._sweep_idle, loop)


_CONTEXT: ssl.SSLContext | None = None


def _default_context() -> ssl.SSLContext:
    """The system's trust store, built once per process (building it costs milliseconds)."""
    global _CONTEXT
    if _CONTEXT is None:
        context = ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        _CONTEXT = context
    return _CONTEXT
