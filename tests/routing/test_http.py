"""Streamable HTTP upstreams: both eras, headers, event streams, sessions and HTTP failures."""

from __future__ import annotations

import json
import re
import sys

import anyio
import httpx
import pytest

from patchbay.errors import UpstreamError, UpstreamTimeout
from patchbay.routing.upstream.base import Era, UpstreamSpec
from patchbay.routing.upstream.pool import UpstreamPool
from tests.fixtures.servers import free_port, garbage_http_command, spawn_ready
from tests.routing.conftest import RecordingSink, call, text_of

pytestmark = pytest.mark.anyio


def http_spec(url: str, key: str = "http", *, era: Era = "auto", headers: dict[str, str] | None = None) -> UpstreamSpec:
    return UpstreamSpec(key=key, name="fixture", transport="streamable_http", url=url, era=era, headers=headers or {})


async def whoami(pool: UpstreamPool, spec: UpstreamSpec) -> dict[str, str]:
    """The HTTP headers the fixture server received with a tools/call."""
    response = await pool.request(spec, "tools/call", call("whoami"), timeout=10)
    headers: dict[str, str] = json.loads(text_of(response))["headers"]
    return headers


async def test_modern_call_carries_the_envelope_headers(pool: UpstreamPool, http_url: str) -> None:
    spec = http_spec(http_url, headers={"X-Api-Key": "secret-1"})
    headers = await whoami(pool, spec)
    assert headers["mcp-protocol-version"] == "2026-07-28"
    assert headers["mcp-method"] == "tools/call"
    assert headers["mcp-name"] == "whoami"
    assert headers["x-api-key"] == "secret-1"
    assert "mcp-session-id" not in headers
    conn = await pool.connection(spec)
    assert (conn.protocol_version, conn.server_info["name"]) == ("2026-07-28", "fixture")


async def test_add_returns_structured_content_unchanged(pool: UpstreamPool, http_url: str) -> None:
    response = await pool.request(http_spec(http_url), "tools/call", call("add", a=20, b=22), timeout=10)
    assert response["result"]["structuredContent"] == {"result": 42}


async def test_legacy_server_gets_a_session_and_the_version_header(pool: UpstreamPool, legacy_http_url: str) -> None:
    spec = http_spec(legacy_http_url, headers={"X-Api-Key": "secret-2"})
    headers = await whoami(pool, spec)
    assert headers["mcp-protocol-version"] == "2025-11-25"
    assert headers["mcp-session-id"]
    assert headers["x-api-key"] == "secret-2"
    assert (await pool.connection(spec)).protocol_version == "2025-11-25"


async def test_forced_legacy_era_on_a_dual_era_server(pool: UpstreamPool, http_url: str) -> None:
    headers = await whoami(pool, http_spec(http_url, "forced", era="legacy"))
    assert headers["mcp-protocol-version"] == "2025-11-25"


async def test_a_lost_session_is_initialized_again_once(pool: UpstreamPool, legacy_http_url: str) -> None:
    spec = http_spec(legacy_http_url)
    old = (await whoami(pool, spec))["mcp-session-id"]
    async with httpx.AsyncClient() as client:
        gone = await client.delete(legacy_http_url, headers={"mcp-session-id": old})
    assert gone.status_code in (200, 204)
    new = (await whoami(pool, spec))["mcp-session-id"]
    assert new and new != old


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_progress_on_the_event_stream_reaches_the_sink(pool: UpstreamPool, http_url: str, era: Era) -> None:
    sink = RecordingSink()
    params = {**call("progress", steps=3), "_meta": {"progressToken": 7}}
    response = await pool.request(http_spec(http_url, era, era=era), "tools/call", params, timeout=10, sink=sink)
    assert text_of(response) == "done"
    assert [(n["params"]["progressToken"], n["params"]["progress"]) for n in sink.notifications] == [
        (7, 1),
        (7, 2),
        (7, 3),
    ]


async def test_legacy_sampling_request_is_answered_through_the_sink(pool: UpstreamPool, http_url: str) -> None:
    sink = RecordingSink(answer="the client's model says hi")
    spec = http_spec(http_url, "legacy", era="legacy")
    response = await pool.request(spec, "tools/call", call("sample", prompt="hi"), timeout=10, sink=sink)
    assert text_of(response) == "the client's model says hi"
    assert sink.requests[0]["params"]["messages"][0]["content"]["text"] == "hi"


async def test_concurrent_calls_share_one_connection(pool: UpstreamPool, http_url: str) -> None:
    spec = http_spec(http_url)
    results: list[str] = []

    async def one(index: int) -> None:
        results.append(text_of(await pool.request(spec, "tools/call", call("echo", text=str(index)), timeout=10)))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for index in range(40):
                tg.start_soon(one, index)
    assert sorted(results, key=int) == [str(i) for i in range(40)]
    assert pool.stats()["connections"] == {"stdio": 0, "streamable_http": 1, "sse": 0}


@pytest.mark.parametrize("era", ["auto", "legacy"])
async def test_a_hanging_call_times_out_and_the_next_one_works(pool: UpstreamPool, http_url: str, era: Era) -> None:
    spec = http_spec(http_url, era, era=era)
    with anyio.fail_after(3), pytest.raises(UpstreamTimeout, match=r"did not answer tools/call within 0.3 s"):
        await pool.request(spec, "tools/call", call("slow", seconds=30), timeout=0.3)
    assert text_of(await pool.request(spec, "tools/call", call("echo", text="ok"), timeout=10)) == "ok"


async def test_json_rpc_errors_pass_through(pool: UpstreamPool, http_url: str) -> None:
    response = await pool.request(http_spec(http_url), "tools/call", call("no-such-tool"), timeout=10)
    assert response["error"]["message"] == "Unknown tool: no-such-tool"


async def test_connection_refused_is_a_clear_error(pool: UpstreamPool) -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(UpstreamError, match=r"upstream 'fixture': cannot connect to http://127\.0\.0\.1:\d+/mcp"):
        await pool.request(http_spec(url), "tools/list", None, timeout=5)


@pytest.mark.parametrize(
    ("status_url", "reason"),
    [
        (401, "HTTP 401 (unauthorized: check the upstream credentials)"),
        (403, "HTTP 403 (forbidden: the upstream credentials lack access)"),
        (500, "HTTP 500 (Internal Server Error)"),
        (503, "HTTP 503 (Service Unavailable)"),
    ],
    indirect=["status_url"],
)
async def test_http_error_statuses_are_named(pool: UpstreamPool, status_url: str, reason: str) -> None:
    with pytest.raises(UpstreamError, match=rf"^upstream 'fixture' answered {re.escape(reason)}$"):
        await pool.request(http_spec(status_url), "tools/list", None, timeout=5)


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("noise", r"upstream 'garbage' sent invalid JSON: b'this is not JSON'"),
        ("array", r"upstream 'garbage' answered with a non-object: \["),
        ("no-result", r"upstream 'garbage' answered without result or error"),
        ("wrong-id", r"upstream 'garbage' answered an unknown request id 'not-\d+'"),
    ],
)
async def test_garbage_answers_give_a_clear_error(pool: UpstreamPool, mode: str, message: str) -> None:
    async with spawn_ready(garbage_http_command("--mode", mode, "--handshake")) as server:
        spec = UpstreamSpec(key=mode, name="garbage", transport="streamable_http", url=server.url)
        with anyio.fail_after(5), pytest.raises(UpstreamError, match=message):
            await pool.request(spec, "tools/call", call("echo", text="x"), timeout=2)


async def test_mcp_param_headers_are_sent_for_annotated_tools(pool: UpstreamPool) -> None:
    command = [sys.executable, "-m", "tests.fixtures.conformance_server", "--transport", "streamable-http"]
    async with spawn_ready([*command, "--port", "0"]) as server:
        spec = UpstreamSpec(key="conformance", name="conformance", transport="streamable_http", url=server.url)
        # No tools/list first: the gateway learns the annotation from the upstream's refusal.
        response = await pool.request(spec, "tools/call", call("test_header_param", region="eu-west"), timeout=10)
        assert "error" not in response, response
        assert "eu-west" in text_of(response)
        again = await pool.request(spec, "tools/call", call("test_header_param", region="Zürich"), timeout=10)
        assert "error" not in again, again


async def test_legacy_get_stream_notifications_reach_the_pool_handler(pool: UpstreamPool, legacy_http_url: str) -> None:
    arrived = anyio.Event()
    got: list[tuple[str, str, dict[str, object]]] = []

    async def handler(key: str, method: str, params: dict[str, object]) -> None:
        got.append((key, method, params))
        arrived.set()

    pool.on_notification(handler)
    spec = http_spec(legacy_http_url, "listening")
    await pool.request(spec, "resources/subscribe", {"uri": "fixture://items/2"}, timeout=10)
    # The standalone GET stream opens in the background; touch until it has carried one update.
    with anyio.fail_after(10):
        while not arrived.is_set():
            await pool.request(spec, "tools/call", call("touch", uri="fixture://items/2"), timeout=10)
            with anyio.move_on_after(0.2):
                await arrived.wait()
    assert got[0] == ("listening", "notifications/resources/updated", {"uri": "fixture://items/2"})
