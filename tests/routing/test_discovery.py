"""Discovery: who an upstream is and every tool it lists, or a clear reason why not."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from patchbay.errors import UpstreamError, UpstreamTimeout
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.discovery import discover
from patchbay.routing.upstream.base import Transport, UpstreamSpec
from patchbay.routing.upstream.pool import UpstreamPool
from patchbay.routing.upstream.stdio import StdioConnection
from tests.fixtures.servers import free_port
from tests.routing.conftest import TIME_COMMAND, stdio_spec

pytestmark = pytest.mark.anyio

PAGED_SERVER = str(Path(__file__).with_name("paged_server.py"))


async def test_discovers_mcp_server_time_over_stdio() -> None:
    found = await discover(stdio_spec("time", command=TIME_COMMAND))
    assert found.protocol_version == "2026-07-28"
    assert found.server_info["name"] == "mcp-time"
    assert {tool["name"] for tool in found.tools} == {"get_current_time", "convert_time"}
    assert all("inputSchema" in tool for tool in found.tools)


async def test_discovers_every_page_of_tools() -> None:
    found = await discover(stdio_spec("paged", command=(sys.executable, PAGED_SERVER)))
    assert [tool["name"] for tool in found.tools] == ["alpha", "beta", "gamma", "delta", "epsilon"]


@pytest.mark.parametrize("transport", ["streamable_http", "sse"])
async def test_discovers_http_upstreams(transport: Transport, http_url: str, sse_url: str) -> None:
    url = http_url if transport == "streamable_http" else sse_url
    found = await discover(UpstreamSpec(key="d", name="fixture", transport=transport, url=url))
    assert found.instructions == "Fixture upstream for Patchbay tests."
    assert "echo" in {tool["name"] for tool in found.tools}
    assert found.capabilities["tools"]


async def test_discovery_through_the_pool_keeps_the_connection(pool: UpstreamPool) -> None:
    spec = stdio_spec()
    found = await discover(spec, pool=pool)
    assert found.server_info["name"] == "fixture"
    assert pool.stats()["stdio_processes"] == 1


async def test_command_not_found() -> None:
    with pytest.raises(UpstreamError, match=r"^upstream 'fixture': command not found: no-such-mcp-server$"):
        await discover(stdio_spec(command=("no-such-mcp-server",)))


async def test_a_server_that_exits_at_once_is_reported_with_its_last_words() -> None:
    script = "import sys; print('starting'); print('error: FOO_API_KEY is not set', file=sys.stderr); sys.exit(2)"
    with pytest.raises(UpstreamError) as info:
        await discover(stdio_spec(command=(sys.executable, "-c", script)), timeout=10)
    assert str(info.value) == "upstream 'fixture' exited with code 2: error: FOO_API_KEY is not set"


async def test_a_server_gone_before_our_first_write_is_reported_with_its_last_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On a loaded machine the process can exit before the gateway writes to it: the write then
    # fails with a broken pipe, and the error must still be the reader's, with the last words.
    original = StdioConnection._write

    async def write_once_it_has_exited(self: StdioConnection, message: JSONObject) -> None:
        assert self.process is not None
        await self.process.wait()
        await original(self, message)

    monkeypatch.setattr(StdioConnection, "_write", write_once_it_has_exited)
    script = "import sys; print('error: FOO_API_KEY is not set', file=sys.stderr); sys.exit(2)"
    with pytest.raises(UpstreamError) as info:
        await discover(stdio_spec(command=(sys.executable, "-c", script)), timeout=10)
    assert str(info.value) == "upstream 'fixture' exited with code 2: error: FOO_API_KEY is not set"


async def test_connection_refused() -> None:
    spec = UpstreamSpec(key="r", name="gone", transport="streamable_http", url=f"http://127.0.0.1:{free_port()}/mcp")
    with pytest.raises(UpstreamError, match=r"^upstream 'gone': cannot connect to"):
        await discover(spec, timeout=5)


@pytest.mark.parametrize("status_url", [401], indirect=True)
async def test_http_status(status_url: str) -> None:
    spec = UpstreamSpec(key="s", name="locked", transport="streamable_http", url=status_url)
    with pytest.raises(UpstreamError, match=r"^upstream 'locked' answered HTTP 401 \(unauthorized"):
        await discover(spec, timeout=5)


async def test_a_silent_server_times_out() -> None:
    spec = stdio_spec(command=(sys.executable, "-c", "import time; time.sleep(60)"))
    with pytest.raises(UpstreamTimeout, match=r"within 1 s"):
        await discover(spec, timeout=1)


async def test_the_temporary_process_is_gone_afterwards() -> None:
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    await discover(stdio_spec("paged", command=(sys.executable, PAGED_SERVER)))
    assert {child.pid for child in psutil.Process().children(recursive=True)} <= before


@pytest.mark.parametrize("url", ["ftp://example.com/mcp", "not a url", ""])
async def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    spec = UpstreamSpec(key="u", name="odd", transport="sse", url=url)
    with pytest.raises(UpstreamError, match=r"^upstream 'odd' (needs an http\(s\) URL|has an invalid URL)"):
        await discover(spec, timeout=5)
