"""The lean HTTP/1.1 client against real loopback servers: uvicorn apps and raw misbehaving ones."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import orjson
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response as StarletteResponse
from starlette.responses import StreamingResponse
from starlette.routing import Route

from patchbay.routing.upstream.h1 import (
    URL,
    H1BodyTooLargeError,
    H1ClosedError,
    H1ConnectError,
    H1Error,
    H1Pool,
    H1ProtocolError,
)
from patchbay.routing.upstream.h1_conn import HIGH_WATER
from patchbay.routing.upstream.h1_request import EncodedHeaders, encode_request
from tests.fixtures.servers import free_port
from tests.routing.conftest import wait_until

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),  # what the gateway runs on
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    backend: tuple[str, dict[str, bool]] = request.param
    return backend


# A uvicorn + Starlette upstream, served in the test's event loop.


@dataclass
class Upstream:
    """The app's URL and what it saw; the test steers its event stream and barrier with events."""

    url: str = ""
    client_ports: list[int] = field(default_factory=list)
    gates: list[asyncio.Event] = field(default_factory=lambda: [asyncio.Event() for _ in range(3)])
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    barrier: int = 4
    arrived: int = 0
    all_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def connections(self) -> int:
        return len(set(self.client_ports))


def upstream_app(state: Upstream) -> Starlette:
    def seen(request: Request) -> None:
        assert request.client is not None
        state.client_ports.append(request.client.port)

    async def echo(request: Request) -> StarletteResponse:
        seen(request)
        reply = {"echo": orjson.loads(await request.body()), "x-test": request.headers.get("x-test")}
        return StarletteResponse(orjson.dumps(reply), media_type="application/json")

    async def events(request: Request) -> StreamingResponse:
        seen(request)

        async def body() -> AsyncIterator[bytes]:
            try:
                for i, gate in enumerate(state.gates):
                    yield f"event: message\ndata: {i}\n\n".encode()
                    await gate.wait()
            finally:
                state.stream_closed.set()

        return StreamingResponse(body(), media_type="text/event-stream")

    async def barrier(request: Request) -> StarletteResponse:
        # Answers only once `state.barrier` requests are in at the same time.
        seen(request)
        state.arrived += 1
        if state.arrived % state.barrier == 0:
            state.all_arrived.set()
        await state.all_arrived.wait()
        return StarletteResponse(b"through", media_type="text/plain")

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/events", events),
            Route("/barrier", barrier),
        ]
    )


@asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a loopback socket bound (and so connectable) before it starts."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream()
    async with serving(upstream_app(state)) as url:
        state.url = url
        yield state


# Raw servers that misbehave on purpose.

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@dataclass
class RawServer:
    handler: Handler
    url: str = ""
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            await self.handler(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[RawServer]:
    raw = RawServer(handler)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    raw.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield raw
    finally:
        server.close()
        for writer in raw.writers:
            writer.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One request: its request line, headers (lower-case names) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head[:-4].split(b"\r\n")
    headers = {}
    for item in fields:
        name, _, value = item.partition(b":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return line, headers, body


def ok(body: bytes, *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"content-length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def answering(reply: Callable[[bytes, bytes], bytes]) -> Handler:
    """A keep-alive handler answering each request with ``reply(request line, body)``."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while not reader.at_eof():
            try:
                line, _headers, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(reply(line, body))
            await writer.drain()

    return handler


# JSON round trips and keep-alive


async def test_json_post_round_trip(upstream: Upstream) -> None:
    async with H1Pool() as pool:
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call"})
        response = await pool.request("POST", URL(upstream.url + "/echo"), {**JSON, "X-Test": "one"}, body)
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        assert orjson.loads(await response.read()) == {"echo": orjson.loads(body), "x-test": "one"}


async def test_headers_may_be_given_as_bytes_pairs(upstream: Upstream) -> None:
    async with H1Pool() as pool:
        headers = [(b"content-type", b"application/json"), (b"x-test", b"two")]
        response = await pool.request("POST", upstream.url + "/echo", headers, b"[1,2]")
        assert orjson.loads(await response.read()) == {"echo": [1, 2], "x-test": "two"}


async def test_keep_alive_reuses_one_connection(upstream: Upstream) -> None:
    url = URL(upstream.url + "/echo")
    async with H1Pool() as pool:
        for i in range(5):
            response = await pool.request("POST", url, JSON, orjson.dumps(i))
            assert orjson.loads(await response.read())["echo"] == i
        assert upstream.connections == 1
        assert pool.stats() == {"connections": 1, "idle": 1}


async def test_concurrent_requests_use_several_connections_then_reuse_them(upstream: Upstream) -> None:
    url = URL(upstream.url + "/barrier")
    async with H1Pool() as pool:

        async def get() -> bytes:
            response = await pool.request("GET", url, {})
            return await response.read()

        with anyio.fail_after(10):
            # The barrier only opens with 4 requests in at once: that takes 4 connections.
            assert await asyncio.gather(*(get() for _ in range(4))) == [b"through"] * 4
            upstream.all_arrived.clear()
            assert await asyncio.gather(*(get() for _ in range(4))) == [b"through"] * 4
        assert upstream.connections == 4
        assert pool.stats() == {"connections": 4, "idle": 4}


async def test_many_callers_sharing_connections_each_get_their_own_answer() -> None:
    # Connections pass from caller to caller within one event-loop turn (a response completes
    # and the connection is taken again before its first caller has resumed).
    async with raw_server(answering(lambda _line, body: ok(body))) as server, H1Pool() as pool:
        url = URL(server.url)

        async def worker(w: int) -> None:
            for i in range(100):
                body = b"%d-%d" % (w, i)
                response = await pool.request("POST", url, {}, body)
                assert await response.read() == body

        with anyio.fail_after(30):
            await asyncio.gather(*(worker(w) for w in range(8)))
        assert server.connections <= 8


async def test_requests_beyond_max_per_origin_wait_for_a_connection() -> None:
    async with raw_server(answering(lambda _line, body: ok(body))) as server, H1Pool(max_per_origin=2) as pool:

        async def post(i: int) -> bytes:
            response = await pool.request("POST", server.url, {}, b"%d" % i)
            return await response.read()

        with anyio.fail_after(10):
            assert await asyncio.gather(*(post(i) for i in range(6))) == [b"%d" % i for i in range(6)]
        assert server.connections == 2


async def test_waiting_for_a_busy_origin_times_out_naming_it(upstream: Upstream) -> None:
    async with H1Pool(max_per_origin=1, connect_timeout=0.2) as pool:
        stream = await pool.request("GET", upstream.url + "/events", {})
        with pytest.raises(H1ConnectError, match=r"no free connection to 127\.0\.0\.1:\d+"):
            await pool.request("POST", upstream.url + "/echo", JSON, b"1")
        await stream.aclose()


# Framing: chunked, close-delimited, no body, interim responses


async def test_chunked_body_with_trailers_leaves_the_connection_clean() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-checksum: abc\r\n\r\n"
    )
    async with raw_server(answering(lambda _line, _body: chunked)) as server, H1Pool() as pool:
        for _ in range(2):
            response = await pool.request("GET", server.url, {})
            assert await response.read() == b"hello world"
            assert "x-checksum" not in response.headers
        assert server.connections == 1


async def test_close_delimited_body_ends_at_eof_and_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end, %d" % n)
        await writer.drain()  # the RawServer closes the connection after the handler

    async with raw_server(handler) as server, H1Pool() as pool:
        for n in (1, 2):
            response = await pool.request("GET", server.url, {})
            assert await response.read() == b"until the end, %d" % n
        assert server.connections == 2


async def test_connection_close_header_means_a_new_connection_next_time() -> None:
    handler = answering(lambda _line, body: ok(body, b"connection: close"))
    async with raw_server(handler) as server, H1Pool() as pool:
        for body in (b"a", b"b"):
            response = await pool.request("POST", server.url, {}, body)
            assert await response.read() == body
        assert server.connections == 2


async def test_head_204_and_304_have_no_body_and_keep_the_connection() -> None:
    def reply(line: bytes, _body: bytes) -> bytes:
        if line.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\ncontent-type: text/plain\r\n\r\n"
        if b"/204" in line:
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        if b"/304" in line:
            return b"HTTP/1.1 304 Not Modified\r\netag: x\r\n\r\n"
        return ok(b"after")

    async with raw_server(answering(reply)) as server, H1Pool() as pool:
        head = await pool.request("HEAD", server.url + "/", {})
        assert (head.status, head.headers["content-length"], await head.read()) == (200, "1234", b"")
        for status in (204, 304):
            response = await pool.request("GET", f"{server.url}/{status}", {})
            assert (response.status, await response.read()) == (status, b"")
        response = await pool.request("GET", server.url + "/after", {})
        assert await response.read() == b"after"
        assert server.connections == 1


async def test_interim_responses_are_skipped() -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\n"
    async with raw_server(answering(lambda _line, _body: early + ok(b"final"))) as server, H1Pool() as pool:
        response = await pool.request("GET", server.url, {})
        assert (response.status, await response.read()) == (200, b"final")
        assert "link" not in response.headers


async def test_repeated_response_headers_are_joined() -> None:
    reply = ok(b"", b"Vary: accept", b"vary: origin")
    async with raw_server(answering(lambda _line, _body: reply)) as server, H1Pool() as pool:
        response = await pool.request("GET", server.url, {})
        assert response.headers["vary"] == "accept, origin"


async def test_a_message_nobody_asked_for_retires_the_connection() -> None:
    # A server's parting 408 right behind the answer must not be taken for the next response.
    parting = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n"
    async with raw_server(answering(lambda _line, body: ok(body) + parting)) as server, H1Pool() as pool:
        for body in (b"one", b"two"):
            response = await pool.request("POST", server.url, {}, body)
            assert (response.status, await response.read()) == (200, body)
        assert server.connections == 2


# Streaming, backpressure and closing early


async def test_event_stream_arrives_as_the_server_sends_it(upstream: Upstream) -> None:
    async with H1Pool() as pool:
        response = await pool.request("GET", upstream.url + "/events", {"accept": "text/event-stream"})
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.stream()
        seen = b""
        with anyio.fail_after(10):
            for i, gate in enumerate(upstream.gates):
                # Event i+1 is only sent once gate i opens: seeing event i proves it came on its own.
                while f"data: {i}\n\n".encode() not in seen:
                    seen += await anext(chunks)
                gate.set()
            async for chunk in chunks:
                seen += chunk
        assert seen == b"".join(f"event: message\ndata: {i}\n\n".encode() for i in range(3))
        assert pool.stats() == {"connections": 1, "idle": 1}


async def test_closing_a_stream_early_closes_its_connection(upstream: Upstream) -> None:
    async with H1Pool() as pool:
        response = await pool.request("GET", upstream.url + "/events", {})
        async with response:
            assert await anext(response.stream()) == b"event: message\ndata: 0\n\n"
        with anyio.fail_after(10):
            await upstream.stream_closed.wait()  # the server saw the disconnect
        assert pool.stats() == {"connections": 0, "idle": 0}
        with pytest.raises(H1ClosedError, match="closed before its body was read"):
            await response.read()
        response = await pool.request("POST", upstream.url + "/echo", JSON, b"1")
        assert orjson.loads(await response.read())["echo"] == 1
        assert upstream.connections == 2


async def test_an_unread_body_pauses_the_socket_until_it_is_consumed() -> None:
    size = 16 << 20
    pattern = bytes(range(256)) * 4096  # 1 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
            for _ in range(size // len(pattern)):
                writer.write(pattern)
                await writer.drain()

    async with raw_server(handler) as server, H1Pool() as pool:
        response = await pool.request("GET", server.url, {})
        await wait_until(lambda: response.buffered >= HIGH_WATER)
        # Paused: what is buffered stays near the mark (plus one socket read), not the 16 MiB sent.
        assert response.buffered <= HIGH_WATER + (256 << 10)
        with anyio.fail_after(30):
            body = await response.read()
        assert body == pattern * (size // len(pattern))
        assert pool.stats() == {"connections": 1, "idle": 1}


async def test_read_refuses_a_body_over_max_size() -> None:
    async with raw_server(answering(lambda _line, _body: ok(b"x" * 100))) as server, H1Pool() as pool:
        response = await pool.request("GET", server.url, {})
        with pytest.raises(H1BodyTooLargeError, match=r"exceeds 10 bytes"):
            await response.read(max_size=10)


# Errors, named by host:port


async def test_refused_connection_is_a_connect_error_naming_the_origin() -> None:
    port = free_port()
    async with H1Pool() as pool:
        with pytest.raises(H1ConnectError, match=rf"cannot connect to 127\.0\.0\.1:{port}") as caught:
            await pool.request("GET", f"http://127.0.0.1:{port}/", {})
    assert caught.value.origin == f"127.0.0.1:{port}"
    assert pool.stats() == {"connections": 0, "idle": 0}


async def test_unknown_host_is_a_connect_error() -> None:
    async with H1Pool() as pool:
        with pytest.raises(H1ConnectError, match=r"cannot connect to no-such-host\.invalid:80"):
            await pool.request("GET", "http://no-such-host.invalid/", {})


async def test_garbage_status_line_is_a_protocol_error() -> None:
    garbage = b"HTTP/1.1 two-hundred fine\r\n\r\n"
    async with raw_server(answering(lambda _line, _body: garbage)) as server, H1Pool() as pool:
        with pytest.raises(H1ProtocolError, match=r"malformed HTTP response from 127\.0\.0\.1:\d+"):
            await pool.request("GET", server.url, {})
        assert pool.stats()["connections"] == 0


async def test_server_closing_mid_body_is_a_closed_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
        await writer.drain()

    async with raw_server(handler) as server, H1Pool() as pool:
        response = await pool.request("GET", server.url, {})
        with pytest.raises(H1ClosedError, match=r"127\.0\.0\.1:\d+ closed the connection in the middle of"):
            await response.read()


async def test_header_values_with_line_breaks_are_refused() -> None:
    async with H1Pool() as pool:
        with pytest.raises(ValueError, match="CR or LF"):
            await pool.request("GET", "http://127.0.0.1:1/", {"x-a": "1\r\nx-injected: 2"})
        with pytest.raises(ValueError, match="CR or LF"):
            await pool.request("GET", "http://127.0.0.1:1/", [(b"x-a", b"1\nx-injected: 2")])


def test_encoded_headers_send_the_same_bytes_as_a_plain_mapping() -> None:
    url = URL("http://example.test:8080/mcp?x=1")
    headers = {"content-type": "application/json", "mcp-session-id": "abc", "x-é": "ü"}
    for method, body in (("POST", b'{"a":1}'), ("POST", b""), ("GET", b""), ("DELETE", b"")):
        encoded = encode_request(method, url, EncodedHeaders(headers), body)
        assert encoded == encode_request(method, url, headers, body)
    assert dict(EncodedHeaders(headers)) == headers


def test_encoded_headers_refuse_line_breaks_and_non_latin1_text() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        EncodedHeaders({"x-a": "1\r\nx-injected: 2"})
    with pytest.raises(ValueError, match="CR or LF"):
        EncodedHeaders({"x-a\n": "1"})
    with pytest.raises(ValueError, match="Latin-1"):
        EncodedHeaders({"x-a": "€"})


# Stale keep-alive connections: retried once, and only when nothing came back


async def test_a_stale_keep_alive_connection_is_retried_on_a_new_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while True:
            _line, _headers, body = await read_request(reader)
            server.requests.append(body)
            if n == 1 and len(server.requests) == 2:
                return  # closed while "idle": the request raced the close
            writer.write(ok(body))

    async with raw_server(handler) as server, H1Pool() as pool:
        for body in (b"first", b"second"):
            response = await pool.request("POST", server.url, {}, body)
            assert await response.read() == body
        assert server.connections == 2
        assert server.requests == [b"first", b"second", b"second"]


async def test_a_new_connection_closed_without_an_answer_is_not_retried() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)

    async with raw_server(handler) as server, H1Pool() as pool:
        with pytest.raises(H1ClosedError, match=r"127\.0\.0\.1:\d+ closed the connection without answering"):
            await pool.request("POST", server.url, {}, b"once")
        assert server.connections == 1


async def test_a_reused_connection_that_sent_part_of_a_response_is_not_retried() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(ok(b"first"))
        await read_request(reader)
        writer.write(b"HTTP/1.1 20")
        await writer.drain()

    async with raw_server(handler) as server, H1Pool() as pool:
        response = await pool.request("POST", server.url, {}, b"first")
        assert await response.read() == b"first"
        with pytest.raises(H1ClosedError, match="in the middle of the response head"):
            await pool.request("POST", server.url, {}, b"second")
        assert server.connections == 1


# Cancellation


async def test_a_request_cancelled_while_waiting_discards_its_connection() -> None:
    got_request = asyncio.Event()
    client_gone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            got_request.set()
            await reader.read()  # never answers; returns once the client hangs up
            client_gone.set()
            return
        writer.write(ok(b"fresh"))
        await writer.drain()

    async with raw_server(handler) as server, H1Pool() as pool:
        call = asyncio.create_task(pool.request("POST", server.url, {}, b"slow"))
        with anyio.fail_after(10):
            await got_request.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await client_gone.wait()
        response = await pool.request("POST", server.url, {}, b"next")
        assert await response.read() == b"fresh"
        assert server.connections == 2


async def test_a_read_cancelled_mid_body_discards_its_connection() -> None:
    client_gone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")
            await reader.read()
            client_gone.set()
            return
        writer.write(ok(b"fresh"))

    async with raw_server(handler) as server, H1Pool() as pool:
        response = await pool.request("GET", server.url, {})
        with anyio.fail_after(10):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await response.read()
            await client_gone.wait()
        assert pool.stats()["connections"] == 0
        response = await pool.request("GET", server.url, {})
        assert await response.read() == b"fresh"


async def test_a_waiter_cancelled_as_a_slot_frees_passes_the_slot_on(upstream: Upstream) -> None:
    async with H1Pool(max_per_origin=1, connect_timeout=5) as pool:
        holder = await pool.request("GET", upstream.url + "/events", {})
        waiting = asyncio.create_task(pool.request("POST", upstream.url + "/echo", JSON, b"1"))
        with anyio.fail_after(10):
            await anyio.wait_all_tasks_blocked()  # `waiting` is queued for the only slot
            await holder.aclose()  # hands the slot to `waiting`...
            waiting.cancel()  # ...which gives up before it could use it
            with pytest.raises(asyncio.CancelledError):
                await waiting
            response = await pool.request("POST", upstream.url + "/echo", JSON, b"2")
            assert orjson.loads(await response.read())["echo"] == 2


async def test_closing_the_pool_fails_a_response_in_flight(upstream: Upstream) -> None:
    pool = H1Pool()
    response = await pool.request("GET", upstream.url + "/events", {})
    await pool.aclose()
    with pytest.raises(H1Error, match="closed"):
        await response.read()
    with pytest.raises(H1ClosedError, match="pool is closed"):
        await pool.request("GET", upstream.url + "/events", {})


async def test_idle_connections_are_closed_after_idle_seconds() -> None:
    closed_by_client = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_request(reader)
        writer.write(ok(b"once"))
        await reader.read()
        closed_by_client.set()

    async with raw_server(handler) as server, H1Pool(idle_seconds=0.05) as pool:
        response = await pool.request("GET", server.url, {})
        assert await response.read() == b"once"
        with anyio.fail_after(10):
            await closed_by_client.wait()
        assert pool.stats() == {"connections": 0, "idle": 0}


# TLS


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, signed by its own key; (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "patchbay test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def test_https_round_trip_keeps_the_connection(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    trusting = ssl.create_default_context(cafile=str(cert))
    handler = answering(lambda _line, body: ok(body))
    async with raw_server(handler, tls=server_context(cert, key)) as server:
        async with H1Pool(ssl_context=trusting) as pool:
            for body in (b"secret one", b"secret two"):
                response = await pool.request("POST", server.url + "/mcp", JSON, body)
                assert await response.read() == body
        assert server.connections == 1


async def test_an_untrusted_certificate_is_a_connect_error(tls_files: tuple[Path, Path]) -> None:
    handler = answering(lambda _line, body: ok(body))
    async with raw_server(handler, tls=server_context(*tls_files)) as server, H1Pool() as pool:
        with pytest.raises(H1ConnectError, match=r"cannot connect to 127\.0\.0\.1:\d+: .*CERTIFICATE_VERIFY"):
            await pool.request("GET", server.url, {})


# URLs


def test_url_is_parsed_once_into_origin_and_target() -> None:
    url = URL("http://Example.COM/a b/c?q=1&r=é")
    assert (url.scheme, url.host, url.port, url.origin) == ("http", "example.com", 80, "example.com:80")
    assert (url.host_header, url.target) == ("example.com", "/a%20b/c?q=1&r=%C3%A9")
    assert URL("https://[::1]:8443").host_header == "[::1]:8443"
    assert URL("https://h").target == "/"
    with pytest.raises(ValueError, match="not an http"):
        URL("ftp://h/")
    with pytest.raises(ValueError, match="credentials"):
        URL("http://user:pw@h/")
