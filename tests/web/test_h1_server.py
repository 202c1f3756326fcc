"""The gateway's HTTP/1.1 server protocol on the wire: raw sockets against a real uvicorn server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from patchbay.web.h1_server import MAX_HEAD_BYTES, STREAM_AFTER, H1Protocol
from tests.harness import free_port

Scope = dict[str, Any]
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class App:
    """A small ASGI app whose routes exercise one behaviour each; it records what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.chunks: list[int] = []
        self.disconnected = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        self.seen.append(f"{scope['method']} {path}")
        if path == "/echo":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                self.chunks.append(len(message.get("body", b"")))
                if not message.get("more_body"):
                    break
            await _respond(send, 200, body)
        elif path == "/slow":
            await asyncio.sleep(0.2)
            await _respond(send, 200, b"slow")
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await self.release.wait()
            await send({"type": "http.response.body", "body": b"one", "more_body": True})
            await send({"type": "http.response.body", "body": b"two", "more_body": False})
        elif path == "/watch":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"watching", "more_body": True})
            while (await receive())["type"] != "http.disconnect":
                pass
            self.disconnected.set()
        elif path == "/boom":
            raise ValueError("boom")
        elif path in BAD_HEADERS:
            await send({"type": "http.response.start", "status": 200, "headers": [BAD_HEADERS[path]]})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _respond(send, 200, b"hello " + scope["method"].encode())


# Response headers the server must refuse (a 500 instead), by the path whose app sends them.
BAD_HEADERS = {
    "/inject": (b"x-bad", b"a\r\nset-cookie: x=1"),
    "/inject-lf": (b"x-bad", b"a\nset-cookie: x=1"),
    "/bad-name": (b"set cookie", b"x=1"),
    "/colon-name": (b"x-bad: y\r\nset-cookie", b"x=1"),
    "/nul": (b"x-bad", b"a\x00b"),
    "/inject-kept": (b"content-type", b"text/plain\r\nset-cookie: x=1"),  # a name whose checked lines are kept
    "/nul-kept": (b"mcp-session-id", b"a\x00b"),
    "/negative-length": (b"content-length", b"-1"),
}


async def _respond(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def serving(app: App, **options: Any) -> AsyncIterator[tuple[int, uvicorn.Server]]:
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=H1Protocol, log_config=None, lifespan="off", **options
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for "started"
            await asyncio.sleep(0.01)
    try:
        yield port, server
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def connected(**options: Any) -> AsyncIterator[tuple[App, asyncio.StreamReader, asyncio.StreamWriter]]:
    """A fresh app served by a fresh server, and one client connection to it."""
    app = App()
    async with serving(app, **options) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            yield app, reader, writer
        finally:
            writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (content-length or chunked)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:] if line)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
    else:
        body = b""
    return status, headers, body


def request(method: str, path: str, body: bytes = b"", **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def closed(reader: asyncio.StreamReader) -> bool:
    async with asyncio.timeout(5):
        return await reader.read(1) == b""


async def test_keep_alive_answers_several_requests_on_one_connection() -> None:
    async with connected() as (_app, reader, writer):
        for body in (b"first", b"second" * 100, b""):
            writer.write(request("POST", "/echo", body))
            status, headers, got = await read_response(reader)
            assert (status, got) == (200, body)
            assert "date" in headers and "connection" not in headers


async def test_a_new_date_reaches_an_open_connection() -> None:
    # Each connection joins the server's default header lines once per list the server sets.
    app = App()
    async with serving(app) as (port, server):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request("GET", "/x"))
            first = (await read_response(reader))[1]["date"]
            ours = "Thu, 01 Jan 2099 00:00:00 GMT"
            for _ in range(3):  # the server's own once-a-second update may replace ours in between
                server.server_state.default_headers = [(b"date", ours.encode())]
                writer.write(request("GET", "/x"))
                date = (await read_response(reader))[1]["date"]
                if date == ours:
                    break
            assert date == ours != first
        finally:
            writer.close()


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with connected() as (app, reader, writer):
        writer.write(request("GET", "/slow") + request("POST", "/echo", b"after") + request("GET", "/x"))
        answers = [await read_response(reader) for _ in range(3)]
        assert [body for _, _, body in answers] == [b"slow", b"after", b"hello GET"]
        assert app.seen == ["GET /slow", "POST /echo", "GET /x"]


async def test_chunked_and_large_bodies_reach_the_app_whole() -> None:
    async with connected() as (app, reader, writer):
        head = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        writer.write(head + b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        assert (await read_response(reader))[2] == b"hello world"
        big = bytes(range(256)) * (3 * STREAM_AFTER // 256)
        writer.write(request("POST", "/echo", big))
        assert (await read_response(reader))[2] == big
        # Past STREAM_AFTER the body was streamed to the app in pieces, not buffered whole first.
        assert len(app.chunks) > 2


async def test_expect_100_continue_is_answered_when_the_app_reads() -> None:
    async with connected() as (_app, reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        async with asyncio.timeout(5):
            assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"body")
        assert (await read_response(reader))[2] == b"body"


async def test_head_gets_headers_without_a_body() -> None:
    async with connected() as (_app, reader, writer):
        writer.write(request("HEAD", "/x") + request("GET", "/x"))
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"content-length: 10" in head
        # The next bytes are the GET's response: the HEAD sent no body.
        assert (await read_response(reader))[2] == b"hello GET"


async def test_a_streamed_response_sends_its_head_before_its_body() -> None:
    async with connected() as (app, reader, writer):
        writer.write(request("GET", "/stream"))
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head
        app.release.set()
        assert await reader.readuntil(b"0\r\n\r\n") == b"3\r\none\r\n3\r\ntwo\r\n0\r\n\r\n"


async def test_the_app_learns_when_the_client_goes_away() -> None:
    async with connected() as (app, reader, writer):
        writer.write(request("GET", "/watch"))
        async with asyncio.timeout(5):
            await reader.readuntil(b"watching")
        writer.close()
        async with asyncio.timeout(5):
            await app.disconnected.wait()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
    ],
)
async def test_malformed_or_oversized_requests_are_refused_and_closed(raw: bytes, status: int) -> None:
    app = App()
    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        got, headers, _ = await read_response(reader)
        assert (got, headers["connection"]) == (status, "close")
        assert await closed(reader)
        assert app.seen == []


@pytest.mark.parametrize("path", ["/boom", *BAD_HEADERS])
async def test_an_app_failure_is_a_500_and_never_a_split_response(path: str) -> None:
    app = App()
    async with serving(app) as (port, _):
        for _ in range(2):  # checked header lines are kept: a refused one must stay refused
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request("GET", path))
            status, headers, body = await read_response(reader)
            assert (status, body) == (500, b"Internal Server Error")
            assert "set-cookie" not in headers
            assert await closed(reader)
        # The server is still up for the next client.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("GET", "/x"))
        assert (await read_response(reader))[0] == 200
        writer.close()


async def test_connection_close_and_http_1_0_close_after_the_response() -> None:
    app = App()
    async with serving(app) as (port, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("GET", "/x", Connection="close"))
        status, headers, _ = await read_response(reader)
        assert (status, headers["connection"]) == (200, "close")
        assert await closed(reader)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /x HTTP/1.0\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        assert await closed(reader)


async def test_idle_connections_are_closed_after_the_keep_alive_timeout() -> None:
    async with connected(timeout_keep_alive=1) as (_app, reader, writer):
        for _ in range(3):  # activity keeps it open past one timeout
            await asyncio.sleep(0.5)
            writer.write(request("GET", "/x"))
            assert (await read_response(reader))[0] == 200
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await closed(reader)
        assert 0.5 < loop.time() - began < 3


async def test_a_request_that_stops_arriving_loses_its_connection() -> None:
    async with connected(timeout_keep_alive=1) as (app, reader, writer):
        writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        assert await closed(reader)
        assert app.seen == []


async def test_shutdown_finishes_the_request_in_flight_and_closes_idle_connections() -> None:
    app = App()
    async with serving(app) as (port, server):
        idle_reader, _ = await asyncio.open_connection("127.0.0.1", port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("GET", "/slow"))
        await asyncio.sleep(0.05)
        server.should_exit = True
        status, headers, body = await read_response(reader)
        assert (status, body, headers["connection"]) == (200, b"slow", "close")
        assert await closed(idle_reader)


@pytest.fixture(scope="module")
def threaded_server() -> Iterator[int]:
    """One server in a thread for the fuzz below (a server per example would dominate its run time)."""
    port = free_port()
    config = uvicorn.Config(App(), host="127.0.0.1", port=port, http=H1Protocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        time.sleep(0.01)
    assert server.started
    yield port
    server.should_exit = True
    thread.join(10)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    noise=st.binary(max_size=2048)
    | st.builds(
        lambda a, b: a + b,
        st.sampled_from([b"GET / HTTP/1.1\r\n", b"POST /echo HTTP/1.1\r\nContent-Length: 5\r\n"]),
        st.binary(max_size=512),
    )
)
def test_random_bytes_never_take_the_server_down(threaded_server: int, noise: bytes) -> None:
    with socket.create_connection(("127.0.0.1", threaded_server), timeout=5) as sock:
        sock.sendall(noise)
        sock.settimeout(0.2)
        with contextlib.suppress(OSError):
            sock.recv(65536)
    with socket.create_connection(("127.0.0.1", threaded_server), timeout=5) as sock:
        sock.sendall(request("GET", "/x"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
