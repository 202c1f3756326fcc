"""A lean HTTP/1.1 client for upstream calls: keep-alive pool, asyncio Protocol, httptools parser.

Why not httpx: on the proxy hot path httpx + httpcore + h11 + anyio cost about a third of the
gateway's CPU. Here a call is a dict lookup and a list pop to find a connection, one join to
build the request, and the C parser calling back straight into the connection.

    pool = H1Pool()
    url = URL("http://127.0.0.1:9100/mcp")          # parse once, reuse for every call
    response = await pool.request("POST", url, {"content-type": "application/json"}, body)
    data = await response.read()                    # or: async for chunk in response.stream()

The rules it keeps (tests/routing/test_h1.py holds it to them):

* A connection goes back to the pool as soon as its response has been received in full and
  the server did not ask to close it (``Connection: close``, HTTP/1.0, a close-delimited
  body). The body is then in memory, so reading it later holds no connection. A response
  closed, cancelled or failed before its body was complete closes its connection.
* Stale keep-alive connections: when a connection taken from the idle pool is closed or
  reset by the server before one byte of the response arrived, the request is sent again,
  once, on a newly opened connection, whatever the method. A server that closes an idle
  keep-alive connection did not process the request we raced it with; the residual risk (a
  server that read a whole request, acted on it, then died without writing a byte) is
  accepted for upstream MCP servers. A request on a new connection, or one that received
  any byte of response, is never retried.
* Response headers are decoded as Latin-1 with lower-case names; a repeated field is joined
  with ``", "`` (RFC 9110 §5.3; lossy only for Set-Cookie, which a gateway does not use).
  Trailers of chunked bodies are dropped. 1xx interim responses are skipped.
* The pool writes ``Host`` (from the URL) and ``Content-Length`` (when there is a body or
  the method carries one); callers must not pass them, nor ``Transfer-Encoding``. A header
  name or value with CR or LF is refused (``ValueError``).
* No read timeout of its own: callers bound each call with ``asyncio.timeout``, and a
  cancelled call closes its connection. ``connect_timeout`` bounds opening a connection
  (TCP and TLS) and, separately, waiting for one when ``max_per_origin`` are busy.
* An unconsumed body pauses the socket above about 1 MiB. Always ``read()`` the response
  or ``aclose()`` it (or use ``async with``): one left half-read holds its connection.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from types import TracebackType

from patchbay.routing.upstream.h1_conn import Connection, Response, StaleConnection
from patchbay.routing.upstream.h1_errors import (
    H1BodyTooLargeError,
    H1ClosedError,
    H1ConnectError,
    H1Error,
    H1ProtocolError,
)
from patchbay.routing.upstream.h1_request import URL, Headers, encode_request

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


class _Site:
    """The connections of one origin (scheme, host, port)."""

    __slots__ = ("idle", "total", "waiters")

    def __init__(self) -> None:
        self.idle: list[Connection] = []  # LIFO: the warmest connection is at the end
        self.total = 0  # connections open or opening, busy or idle
        # Requests waiting for a connection: each gets a connection, or None for a free slot.
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()


class H1Pool:
    """Keep-alive HTTP/1.1 connections per (scheme, host, port), the most recently used first."""

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
        self._sites: dict[str, _Site] = {}
        self._conns: set[Connection] = set()
        self._sweep: asyncio.TimerHandle | None = None
        self._closed = False

    async def request(self, method: str, url: URL | str, headers: Headers, body: bytes = b"") -> Response:
        """Send a request; the response comes back once its head has arrived (see the module doc)."""
        if not isinstance(url, URL):
            url = URL(url)
        data = encode_request(method, url, headers, body)
        head_only = method == "HEAD"
        site = self._sites.get(url.key)
        conn = self._pop_idle(site) if site is not None else None
        if conn is None:
            conn = await self._acquire(url, fresh=False)
        response = Response(conn)
        try:
            await conn.send(data, response, head_only)
        except StaleConnection:
            conn = await self._acquire(url, fresh=True)
            response = Response(conn)
            await conn.send(data, response, head_only)
        return response

    def stats(self) -> dict[str, int]:
        """How many connections are open, and how many of them idle."""
        idle = sum(len(site.idle) for site in self._sites.values())
        return {"connections": len(self._conns), "idle": idle}

    async def aclose(self) -> None:
        """Close every connection; responses still arriving fail with ``H1ClosedError``."""
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

    def _pop_idle(self, site: _Site) -> Connection | None:
        idle = site.idle
        while idle:
            conn = idle.pop()
            expired = conn.loop.time() - conn.idle_since > self.idle_seconds
            conn.idle_since = -1.0
            if expired:
                # The newest has expired, so have all the others.
                conn.close()
                while idle:
                    idle[-1].close()  # takes itself off the list
                return None
            if not conn.closed:
                return conn
        return None

    async def _acquire(self, url: URL, *, fresh: bool) -> Connection:
        """A connection to ``url``'s origin: idle (unless ``fresh``), new, or handed over when one frees."""
        if self._closed:
            raise H1ClosedError(f"the connection pool is closed (request to {url.origin})", url.origin)
        site = self._sites.get(url.key)
        if site is None:
            site = self._sites[url.key] = _Site()
        while True:
            if not fresh and (conn := self._pop_idle(site)) is not None:
                return conn
            if site.total < self.max_per_origin:
                site.total += 1
                return await self._connect(url)
            got = await self._wait(site, url)
            if got is None:
                return await self._connect(url)  # a slot was handed over
            if not got.closed:
                if not fresh:
                    return got
                got.close()  # passes its slot on, maybe back to us on the next turn

    async def _wait(self, site: _Site, url: URL) -> Connection | None:
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
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

    async def _connect(self, url: URL) -> Connection:
        """Open a connection in a slot already counted in its site's total."""
        loop = asyncio.get_running_loop()
        conn = Connection(url, loop, on_reusable=self._release, on_closed=self._retire)
        context = (self._ssl or _default_context()) if url.tls else None
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
            conn.abort()  # frees the slot
            if isinstance(exc, TimeoutError):
                message = f"timed out connecting to {url.origin} after {self.connect_timeout:g} s"
                raise H1ConnectError(message, url.origin) from None
            if isinstance(exc, OSError):  # refused, unreachable, DNS (gaierror), TLS (SSLError)
                raise H1ConnectError(f"cannot connect to {url.origin}: {exc}", url.origin) from exc
            raise
        self._conns.add(conn)
        return conn

    def _release(self, conn: Connection) -> None:
        """A connection whose response is complete: to the next waiter, else onto the idle list."""
        if self._closed:
            conn.close()
            return
        site = self._sites[conn.url.key]
        while site.waiters:
            waiter = site.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = conn.loop.time()
        site.idle.append(conn)
        if self._sweep is None:
            self._sweep = conn.loop.call_later(self.idle_seconds, self._sweep_idle, conn.loop)

    def _retire(self, conn: Connection) -> None:
        """Forget a connection that is closing, and free its slot (once per connection)."""
        self._conns.discard(conn)
        site = self._sites[conn.url.key]
        if conn.idle_since >= 0:
            conn.idle_since = -1.0
            site.idle.remove(conn)
        self._free_slot(site)

    def _free_slot(self, site: _Site) -> None:
        while site.waiters:
            waiter = site.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter, which connects
                return
        site.total -= 1

    def _sweep_idle(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close connections idle for ``idle_seconds``; come back when the next one will be."""
        self._sweep = None
        deadline = loop.time() - self.idle_seconds
        oldest: float | None = None
        for site in self._sites.values():
            idle = site.idle
            while idle and idle[0].idle_since <= deadline:
                idle[0].close()  # takes itself off the list
            if idle and (oldest is None or idle[0].idle_since < oldest):
                oldest = idle[0].idle_since
        if oldest is not None:
            delay = max(0.0, oldest + self.idle_seconds - loop.time())
            self._sweep = loop.call_later(delay, self._sweep_idle, loop)


_CONTEXT: ssl.SSLContext | None = None


def _default_context() -> ssl.SSLContext:
    """The system trust store, loaded once per process (loading it takes milliseconds)."""
    global _CONTEXT
    if _CONTEXT is None:
        context = ssl.create_default_context()
        context.set_alpn_protocols(["http/1.1"])
        _CONTEXT = context
    return _CONTEXT
