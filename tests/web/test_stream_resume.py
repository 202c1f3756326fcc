"""SEP-1699: a 2025-11-25 client that loses a response stream resumes it with Last-Event-ID."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import mcp_types as types
import orjson
import pytest
from mcp import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.fixtures.servers import running_fixture, spawn_ready
from tests.harness import Upstream, add_upstreams, initialize_request, make_key, make_server, running_gateway
from tests.routing.test_http_polling import CONFORMANCE

pytestmark = pytest.mark.anyio

ACCEPT = "application/json, text/event-stream"


async def _gateway_over(
    stack: AsyncExitStack, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], upstream: Upstream
) -> str:
    await add_upstreams(sessionmaker, settings, [upstream])
    await make_server(sessionmaker, name="main", upstreams=[upstream.name])
    key = await make_key(sessionmaker, settings, server="main")
    base = await stack.enter_async_context(running_gateway(settings))
    return f"{base}/mcp/k/{key}"


@pytest.fixture
async def polling_gateway(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    """A gateway over the conformance fixture, whose ``test_reconnection`` closes its stream mid-call."""
    async with AsyncExitStack() as stack:
        # A pre-2026 upstream: only the handshake era has streams to poll.
        fixture = await stack.enter_async_context(spawn_ready([*CONFORMANCE, "--legacy-only"]))
        yield await _gateway_over(stack, settings, sessionmaker, Upstream(name="cf", url=fixture.url))


@pytest.fixture
async def gateway(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(running_fixture("streamable-http"))
        yield await _gateway_over(stack, settings, sessionmaker, Upstream(name="fx", url=url))


async def _open_session(http: httpx.AsyncClient, url: str, version: str = "2025-11-25") -> dict[str, str]:
    body = initialize_request({"elicitation": {}})
    body["params"]["protocolVersion"] = version  # type: ignore[index]
    opened = await http.post(url, json=body, headers={"Accept": ACCEPT})
    assert opened.status_code == 200
    headers = {"Accept": ACCEPT, "Mcp-Session-Id": opened.headers["mcp-session-id"], "Mcp-Protocol-Version": version}
    done = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert done.status_code == 202
    return headers


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Parse an SSE body into events (``id``, ``retry``, ``data`` fields); comments are skipped."""
    event: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")


def _call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}


async def test_a_dropped_response_stream_resumes_with_the_final_result(gateway: str) -> None:
    async with httpx.AsyncClient(timeout=20) as http:
        headers = await _open_session(http, gateway)
        async with http.stream("POST", gateway, json=_call("fx__elicit", {"message": "who?"}), headers=headers) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = _events(r)
            priming = await anext(events)
            question = await anext(events)
        # The client dropped the stream while the upstream waits for the elicitation answer.
        assert priming["data"] == "" and priming["retry"] == "1000"
        asked = orjson.loads(question["data"])
        assert asked["method"] == "elicitation/create"
        answer = {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept", "content": {"answer": "ada"}}}
        assert (await http.post(gateway, json=answer, headers=headers)).status_code == 202

        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": question["id"]}
        async with http.stream("GET", gateway, headers=resume) as resumed:
            rest = [event async for event in _events(resumed)]
        # Replaying from the priming event gives everything again, in order.
        again = {**resume, "Last-Event-ID": priming["id"]}
        async with http.stream("GET", gateway, headers=again) as replayed:
            everything = [event async for event in _events(replayed)]

    assert len(rest) == 1
    final = orjson.loads(rest[0]["data"])
    assert final["id"] == 7
    assert "ada" in final["result"]["content"][0]["text"]
    assert [e["id"] for e in everything] == [question["id"], rest[0]["id"]]


async def test_another_session_cannot_resume_a_stream(gateway: str) -> None:
    async with httpx.AsyncClient(timeout=20) as http:
        owner = await _open_session(http, gateway)
        async with http.stream("POST", gateway, json=_call("fx__elicit", {"message": "who?"}), headers=owner) as r:
            events = _events(r)
            await anext(events)
            question = await anext(events)
        intruder = await _open_session(http, gateway)
        resume = {**intruder, "Accept": "text/event-stream", "Last-Event-ID": question["id"]}
        async with http.stream("GET", gateway, headers=resume) as stolen:
            first = await anext(stolen.aiter_text())
        asked = orjson.loads(question["data"])
        answer = {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "decline"}}
        assert (await http.post(gateway, json=answer, headers=owner)).status_code == 202
    # The intruder gets its own standalone stream, which opens with a comment, not the owner's events.
    assert first.startswith(": open")


async def test_clients_before_2025_11_25_get_no_priming_event(gateway: str) -> None:
    async with httpx.AsyncClient(timeout=20) as http:
        headers = await _open_session(http, gateway, version="2025-06-18")
        call = _call("fx__progress", {"steps": 1})
        call["params"]["_meta"] = {"progressToken": "p"}
        async with http.stream("POST", gateway, json=call, headers=headers) as r:
            events = [event async for event in _events(r)]
    assert [orjson.loads(e["data"]).get("method") for e in events] == ["notifications/progress", None]
    assert all("id" not in e for e in events)


async def test_an_upstream_poll_is_mirrored_and_the_client_resumes_for_the_result(polling_gateway: str) -> None:
    async with httpx.AsyncClient(timeout=20) as http:
        headers = await _open_session(http, polling_gateway)
        call = _call("cf__test_reconnection", {})
        async with http.stream("POST", polling_gateway, json=call, headers=headers) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            before = [event async for event in _events(r)]
        # The upstream closed its stream to be polled; so did the gateway, after the priming event only.
        assert [e["data"] for e in before] == [""]
        resume = {**headers, "Accept": "text/event-stream", "Last-Event-ID": before[0]["id"]}
        async with http.stream("GET", polling_gateway, headers=resume) as resumed:
            after = [event async for event in _events(resumed)]
    final = orjson.loads(after[-1]["data"])
    assert final["id"] == 7
    assert final["result"]["content"][0]["text"] == "Reconnection test completed"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_sdk_clients_get_the_result_of_a_polled_call(polling_gateway: str, mode: str) -> None:
    async with Client(polling_gateway, mode=mode) as client:
        result = await client.call_tool("cf__test_reconnection", {})
    block = result.content[0]
    assert isinstance(block, types.TextContent) and block.text == "Reconnection test completed"
