"""The gateway's HTTP/1.1 server protocol: uvicorn runs the server, this speaks HTTP per connection.

uvicorn keeps what it is good at (sockets, signals, lifespan, the Date header, graceful
shutdown); this protocol replaces its per-request machinery on the proxied call's hot path
(decision 0014 has the figures). It is plain ASGI 3 for every route, with these
differences in *how*, never in what the application sees:

- A request whose body arrives complete before it would start (nearly all of them) starts its
  task once, with the body in hand: ``receive`` answers at once, no event, no wake-up.
  A body larger than ``STREAM_AFTER`` bytes, or one behind ``Expect: 100-continue``, is
  streamed instead, with reading paused while the application has not taken it.
- A response with a ``content-length`` goes out in one write (status line, headers, body);
  a streamed one (no length: chunked) writes its head at once, as an event stream needs.
- Response headers are checked with one pattern and a CRLF count over the whole head, not two
  patterns per header.
- The keep-alive timeout is one timer per idle period per connection, re-armed when it fires,
  instead of one timer per request. It also ends a request whose head or body stops arriving
  before the app has it (uvicorn waits for such a client forever).

Limits: the request line and headers together may not exceed ``MAX_HEAD_BYTES`` (431, then
close); a malformed request gets 400 and the connection closes; pipelined requests are
answered in order, reading paused until the one in progress is answered.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from collections import deque
from typing import Any, cast
from urllib.parse import unquote

import httptools
from starlette.types import ASGIApp, Message
from uvicorn.config import Config
from uvicorn.protocols.utils import get_local_addr, get_remote_addr, is_ssl
from uvicorn.server import ServerState

logger = logging.getLogger("patchbay.http")

STREAM_AFTER = 64 * 1024  # a body still incomplete past this many bytes is streamed to the app
MAX_HEAD_BYTES = 64 * 1024  # request line + headers
_READ_HIGH_WATER = 256 * 1024  # buffered, untaken body bytes before reading pauses


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
# One response header line: a token name, a value without control characters (CR and LF
# included, so a value cannot smuggle in a header of its own), CRLF.
_VALID_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [^\x00-\x08\x0a-\x1f\x7f]*\r\n")
_HEADER_LINE = b"%s: %s\r\n"
# Lines already checked, by (name, value): MCP responses repeat the same few headers, and
# checking each afresh was a visible share of a proxied call. Only these names are kept (no
# cookie or redirect carrying a secret stays in memory for it), and the dict is emptied when full.
_CHECKED_LINES: dict[tuple[bytes, bytes], bytes] = {}
_CHECKED_LINES_MAX = 4096
_KEPT_NAMES = frozenset({b"content-type", b"cache-control", b"x-accel-buffering", b"mcp-session-id"})


def _header_line(name: bytes, value: bytes) -> bytes:
    """``name: value`` CRLF; RuntimeError unless the name is a token and the value has no control character."""
    keep = type(name) is bytes and type(value) is bytes and name in _KEPT_NAMES
    if keep:
        line = _CHECKED_LINES.get((name, value))
        if line is not None:
            return line
    line = _HEADER_LINE % (name, value)
    if _VALID_LINE.fullmatch(line) is None:
        raise RuntimeError("invalid HTTP response header name or value")
    if keep:
        if len(_CHECKED_LINES) >= _CHECKED_LINES_MAX:
            _CHECKED_LINES.clear()
        _CHECKED_LINES[(name, value)] = line
    return line


class _DefaultHead:
    """The server's default header lines (``date``, ``server``), joined once per list the server sets."""

    __slots__ = ("block", "headers")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] | None = None
        self.block = b""

    def of(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        # uvicorn replaces the list (it does not change it in place) when the date moves on.
        if headers is not self.headers:
            self.block = b"".join([_header_line(name, value) for name, value in headers])
            self.headers = headers
        return self.block


def _plain_response(status: int, text: str) -> bytes:
    body = text.encode()
    return b"%scontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\nconnection: close\r\n\r\n%s" % (
        _STATUS_LINES[status],
        len(body),
        body,
    )


class H1Protocol(asyncio.Protocol):
    """One client connection: parse requests, run the ASGI app per request, write responses."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.app: ASGIApp = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.default_head = _DefaultHead()
        self.app_state = app_state
        self.root_path = config.root_path
        self.limit_concurrency = config.limit_concurrency
        self.keep_alive_timeout = float(config.timeout_keep_alive)
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self.transport: asyncio.Transport | None = None
        self.server: tuple[str, int | None] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        # The request being parsed, the one being answered, and parsed ones waiting their turn.
        self.parsing: Exchange | None = None
        self.active: Exchange | None = None
        self.waiting: deque[Exchange] = deque()
        self.head_bytes = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.refusal: tuple[int, str] | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.last_active = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None

    # -- connection ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have the asyncio.Transport interface without subclassing it.
        self.transport = tcp = cast(asyncio.Transport, transport)
        self.server_state.connections.add(self)  # type: ignore[arg-type]
        self.server = get_local_addr(tcp)
        self.client = get_remote_addr(tcp)
        self.scheme = "https" if is_ssl(tcp) else "http"
        self._went_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        active = self.active
        if active is not None and not active.response_complete:
            active.disconnected = True
            active.wake()
        self.waiting.clear()
        self._wake_writer()
        if exc is None and self.transport is not None:
            self.transport.close()

    def eof_received(self) -> bool | None:
        return None

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # No protocol switching here: the request is answered as plain HTTP (its exchange
            # already knows to close afterwards) and the bytes after it are not read.
            if self.parsing is not None:
                self.on_message_complete()
        except httptools.HttpParserError:
            status, text = self.refusal or (400, "Invalid HTTP request received.")
            logger.info("refused a request: %s", text)
            self._refuse(status, text)

    def _refuse(self, status: int, text: str) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.active is None or not self.active.response_started:
            transport.write(_plain_response(status, text))
        transport.close()

    def shutdown(self) -> None:
        """The server is stopping: close when idle, else after the response in progress."""
        if self.transport is None:
            return
        if self.active is None:
            self.transport.close()
        else:
            self.active.keep_alive = False
            self.waiting.clear()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake_writer()

    def _wake_writer(self) -> None:
        drained, self.drained = self.drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its low-water mark (or the client is gone)."""
        if self.drained is None:
            self.drained = self.loop.create_future()
        await self.drained

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- keep-alive --------------------------------------------------------------------------------

    def _went_idle(self) -> None:
        self.last_active = self.loop.time()
        if self.idle_timer is None:
            self.idle_timer = self.loop.call_at(self.last_active + self.keep_alive_timeout, self._idle_check)

    def _idle_check(self) -> None:
        self.idle_timer = None
        transport = self.transport
        if transport is None or transport.is_closing() or self.active is not None:
            return  # answering: the next idle period arms a new timer
        # Idle, or in the middle of a request's head or (small) body that stopped arriving: a
        # client that sends nothing for the timeout loses the connection either way.
        due = self.last_active + self.keep_alive_timeout
        if self.loop.time() >= due:
            transport.close()
        else:
            self.idle_timer = self.loop.call_at(due, self._idle_check)

    # -- parser callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.expect_continue = False
        self.parsing = None

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_bytes += len(url)
        if self.head_bytes > MAX_HEAD_BYTES:
            self._head_too_large()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > MAX_HEAD_BYTES:
            self._head_too_large()
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True
        self.headers.append((name, value))

    def _head_too_large(self) -> None:
        self.refusal = (431, "Request header fields too large.")
        raise httptools.HttpParserError("head too large")

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": self.root_path,
            "path": self.root_path + path,
            "raw_path": self.root_path.encode("ascii") + raw_path,
            "query_string": url.query or b"",
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        exchange = Exchange(self, scope)
        exchange.keep_alive = version != "1.0" and parser.should_keep_alive() and not parser.should_upgrade()
        self.parsing = exchange
        if self.expect_continue:
            exchange.expect_continue = True
            self._begin(exchange)  # the client waits for 100 Continue before it sends the body

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is None:
            return
        exchange.chunks.append(body)
        exchange.buffered += len(body)
        if exchange.started:
            if exchange.buffered > _READ_HIGH_WATER:
                self.pause_reading()
            exchange.wake()
        elif exchange.buffered > STREAM_AFTER:
            self._begin(exchange)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is None:
            return
        self.parsing = None
        exchange.body_complete = True
        if exchange.started:
            exchange.wake()
        else:
            self._begin(exchange)

    # -- running requests --------------------------------------------------------------------------

    def _begin(self, exchange: Exchange) -> None:
        exchange.started = True
        if self.active is not None:
            # Pipelined: answered after the one in progress; stop reading until then.
            self.waiting.append(exchange)
            self.pause_reading()
            return
        self._run(exchange)

    def _run(self, exchange: Exchange) -> None:
        self.active = exchange
        limit = self.limit_concurrency
        if limit is not None and (len(self.server_state.connections) >= limit or len(self.server_state.tasks) >= limit):
            logger.warning("exceeded the concurrency limit")
            app: ASGIApp = _service_unavailable
        else:
            app = self.app
        task = self.loop.create_task(exchange.run(app))
        exchange.task = task
        self.server_state.tasks.add(task)

    def response_done(self, exchange: Exchange) -> None:
        """``exchange`` has sent its whole response: close, or go on with the connection."""
        self.server_state.total_requests += 1
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not exchange.keep_alive:
            transport.close()
            return
        self.active = None
        if self.waiting:
            self._run(self.waiting.popleft())
            return
        self.resume_reading()
        self._went_idle()


class Exchange:
    """One request and its response: the ASGI ``receive`` and ``send`` of one app call."""

    __slots__ = (
        "body_complete",
        "buffered",
        "chunked",
        "chunks",
        "conn",
        "disconnected",
        "expect_continue",
        "head",
        "keep_alive",
        "remaining",
        "response_complete",
        "response_started",
        "scope",
        "started",
        "task",
        "waiter",
    )

    def __init__(self, conn: H1Protocol, scope: dict[str, Any]) -> None:
        self.conn = conn
        self.scope = scope
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.body_complete = False
        self.started = False
        self.expect_continue = False
        self.keep_alive = True
        self.disconnected = False
        self.response_started = False
        self.response_complete = False
        self.chunked = False
        self.remaining = 0
        self.head: bytes | None = None  # a content-length response's head, written with its body
        self.waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except BaseException as exc:
            logger.error("exception in ASGI application", exc_info=exc)
            if not self.response_started and not self.disconnected:
                self._write_and_close(_plain_response(500, "Internal Server Error"))
            else:
                self._close()
            if not isinstance(exc, Exception):
                raise
        else:
            if not self.disconnected:
                if not self.response_started:
                    logger.error("ASGI application returned without starting a response")
                    self._write_and_close(_plain_response(500, "Internal Server Error"))
                elif not self.response_complete:
                    logger.error("ASGI application returned without completing its response")
                    self._close()
        finally:
            if self.task is not None:
                self.conn.server_state.tasks.discard(self.task)

    def _close(self) -> None:
        transport = self.conn.transport
        if transport is not None:
            transport.close()

    def _write_and_close(self, data: bytes) -> None:
        transport = self.conn.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)
            transport.close()

    async def receive(self) -> Message:
        conn = self.conn
        if self.expect_continue:
            self.expect_continue = False
            if not self.response_started and conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while True:
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
            if self.chunks or (self.body_complete and self.buffered >= 0):
                body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
                self.chunks = []
                more = not self.body_complete
                # -1 once the last piece is handed over: from then on receive waits for the end.
                self.buffered = 0 if more else -1
                if more:
                    conn.resume_reading()
                return {"type": "http.request", "body": body, "more_body": more}
            self.waiter = conn.loop.create_future()
            await self.waiter

    async def send(self, message: Message) -> None:
        conn = self.conn
        if conn.writing_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            return
        transport = conn.transport
        assert transport is not None
        kind = message["type"]
        if not self.response_started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected ASGI message 'http.response.start', got {kind!r}")
            self._start(message)
            return
        if self.response_complete or kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r} after the response started")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.scope["method"] == "HEAD":
            data = b""
        elif self.chunked:
            if body:
                data = b"%x\r\n%s\r\n" % (len(body), body) if more else b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            else:
                data = b"" if more else b"0\r\n\r\n"
        else:
            if len(body) > self.remaining:
                raise RuntimeError("response content longer than its content-length")
            self.remaining -= len(body)
            data = body
        head = self.head
        if head is not None:
            self.head = None
            data = head + data if data else head
        if data:
            transport.write(data)
        if not more:
            if self.remaining != 0 and self.scope["method"] != "HEAD":
                raise RuntimeError("response content shorter than its content-length")
            self.response_complete = True
            self.wake()
            conn.response_done(self)

    def _start(self, message: Message) -> None:
        status: int = message["status"]
        if status not in _STATUS_LINES:
            raise RuntimeError(f"invalid HTTP status {status!r}")
        conn = self.conn
        lines = [conn.default_head.of(conn.server_state.default_headers)]
        length: int | None = None
        close = False
        for name, value in message.get("headers", ()):
            name = name.lower()
            if name == b"content-length":
                length = int(value)
                if length < 0:
                    raise RuntimeError("invalid HTTP response header name or value")
                lines.append(b"content-length: %d\r\n" % length)
                continue
            if name == b"connection" and b"close" in value.lower():
                close = True
            elif name == b"transfer-encoding":
                self.chunked = value.lower() == b"chunked"
            lines.append(_header_line(name, value))
        block = b"".join(lines)
        extra = b""
        if close:
            self.keep_alive = False
        elif not self.keep_alive:
            extra = b"connection: close\r\n"
        head_only = self.scope["method"] == "HEAD" or status in (204, 304) or status < 200
        if length is not None:
            self.remaining = length
            self.chunked = False
        elif not head_only and not self.chunked:
            self.chunked = True
            extra += b"transfer-encoding: chunked\r\n"
        head = b"%s%s%s\r\n" % (_STATUS_LINES[status], block, extra)
        # Only a head that passed every check counts as started: a refused one still gets a 500.
        self.response_started = True
        self.expect_continue = False
        if length is not None and not head_only:
            self.head = head  # goes out with the body, in one write
        else:
            transport = self.conn.transport
            assert transport is not None
            transport.write(head)


async def _service_unavailable(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b"Service Unavailable"})
