"""Shared pieces for the upstream connection tests: specs for the fixture servers, sinks, a pool."""

from __future__ import annotations

import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import Era, StreamState, UpstreamSpec
from patchbay.routing.upstream.pool import UpstreamPool
from tests.fixtures.servers import REPO_ROOT, garbage_stdio_command, running_fixture_sync, stdio_command

TIME_COMMAND = (sys.executable, "-m", "mcp_server_time")


def stdio_spec(key: str = "fixture", *args: str, era: Era = "auto", command: tuple[str, ...] = ()) -> UpstreamSpec:
    """A spec for the stdio fixture server (extra command-line ``args`` such as ``--era legacy``)."""
    return UpstreamSpec(
        key=key,
        name="fixture",
        transport="stdio",
        command=command or tuple(stdio_command(*args)),
        cwd=str(REPO_ROOT),
        era=era,
    )


def tiny_spec(key: str = "tiny") -> UpstreamSpec:
    """A spec for the standard-library stdio server: real, but it starts in milliseconds."""
    command = (sys.executable, "-I", str(Path(__file__).with_name("tiny_server.py")))
    return UpstreamSpec(key=key, name="tiny", transport="stdio", command=command)


def garbage_spec(mode: str) -> UpstreamSpec:
    return UpstreamSpec(
        key=f"garbage-{mode}",
        name="garbage",
        transport="stdio",
        command=tuple(garbage_stdio_command("--mode", mode, "--handshake")),
    )


def call(name: str, **arguments: Any) -> JSONObject:
    """``tools/call`` params."""
    return {"name": name, "arguments": arguments}


def text_of(response: JSONObject) -> str:
    """The text of the first content block of a tools/call response."""
    text: str = response["result"]["content"][0]["text"]
    return text


class RecordingSink:
    """A downstream client stand-in: records notifications, answers server→client requests."""

    def __init__(self, answer: str = "sampled by the client") -> None:
        self.notifications: list[JSONObject] = []
        self.requests: list[JSONObject] = []
        self.answer = answer
        self.got_notification = anyio.Event()

        self.stream_states: list[str] = []

    async def notification(self, message: JSONObject) -> None:
        self.notifications.append(message)
        self.got_notification.set()

    def upstream_stream(self, state: StreamState) -> None:
        self.stream_states.append(state)

    async def request(self, message: JSONObject) -> JSONObject:
        self.requests.append(message)
        if message["method"] == "roots/list":
            return {"jsonrpc": "2.0", "id": message["id"], "result": {"roots": [{"uri": "file:///work"}]}}
        content = {"type": "text", "text": self.answer}
        result = {"role": "assistant", "content": content, "model": "test-model"}
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(max_stdio_processes=8, idle_seconds=600, connect_timeout=20)
    await pool.start()
    yield pool
    await pool.aclose()


@pytest.fixture(scope="module")
def http_url() -> Iterator[str]:
    """A streamable HTTP fixture server speaking both eras."""
    with running_fixture_sync("streamable-http") as url:
        yield url


@pytest.fixture(scope="module")
def legacy_http_url() -> Iterator[str]:
    """A streamable HTTP fixture server that refuses the 2026-07-28 era."""
    with running_fixture_sync("streamable-http", era="legacy") as url:
        yield url


@pytest.fixture(scope="module")
def sse_url() -> Iterator[str]:
    """A legacy HTTP+SSE fixture server speaking both eras."""
    with running_fixture_sync("sse") as url:
        yield url


class _StatusHandler(BaseHTTPRequestHandler):
    status = 500

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self.send_response(self.status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "4")
        self.end_headers()
        self.wfile.write(b"nope")

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def status_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A real HTTP server answering every request with the status given by ``indirect`` parametrize."""
    handler = type("Handler", (_StatusHandler,), {"status": request.param})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/mcp"
    server.shutdown()
    server.server_close()


async def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait for a condition nothing signals (a process being reaped), checking it often."""
    with anyio.fail_after(seconds):
        while not condition():  # noqa: ASYNC110 - no event exists for "the reaper ran"
            await anyio.sleep(0.01)


class BlockingSink(RecordingSink):
    """A client that takes its time answering a server→client request, until released."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = anyio.Event()
        self.release = anyio.Event()

    async def request(self, message: JSONObject) -> JSONObject:
        self.asked.set()
        await self.release.wait()
        return await super().request(message)
