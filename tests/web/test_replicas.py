"""Two gateway processes' worth of state (two apps) sharing one database and one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.mcp import exchange
from patchbay.settings import Settings
from tests.fixtures.servers import stdio_command
from tests.harness import (
    Upstream,
    add_upstreams,
    initialize_request,
    make_key,
    make_server,
    running_gateway,
    serving_gateway,
)
from tests.web.live import TOOLS_CHANGED, admin_token, connected, patchbay

pytestmark = pytest.mark.anyio

REDIS = "redis://127.0.0.1:6379/0"
ACCEPT = "application/json, text/event-stream"


@asynccontextmanager
async def _two_replicas(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], upstream: Upstream
) -> AsyncIterator[tuple[str, str, str]]:
    """Two gateways on one database and one Redis, serving server ``main`` over ``upstream``; (a, b, key)."""
    await add_upstreams(sessionmaker, settings, [upstream])
    await make_server(sessionmaker, name="main", upstreams=[upstream.name])
    key = await make_key(sessionmaker, settings, server="main")
    shared = settings.model_copy(update={"redis_url": REDIS})
    async with AsyncExitStack() as stack:
        a = await stack.enter_async_context(running_gateway(shared))
        b = await stack.enter_async_context(running_gateway(shared))
        yield a, b, key


@pytest.fixture
async def replicas(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[str, str, str]]:
    async with _two_replicas(settings, sessionmaker, Upstream(name="fx", command=stdio_command())) as replicas:
        yield replicas


def _events(body: bytes) -> list[dict[str, Any]]:
    # A priming event (SEP-1699) has an id and empty data: nothing to decode.
    return [orjson.loads(line[5:]) for line in body.splitlines() if line.startswith(b"data:") and line[5:].strip()]


async def test_legacy_session_opened_on_one_replica_continues_on_another(
    replicas: tuple[str, str, str],
) -> None:
    a, b, key = replicas
    headers = {"Authorization": f"Bearer {key}", "Accept": ACCEPT}
    init = initialize_request()
    async with httpx.AsyncClient(timeout=20) as http:
        opened = await http.post(f"{a}/mcp", json=init, headers=headers)
        session = {
            **headers,
            "Mcp-Session-Id": opened.headers["mcp-session-id"],
            "MCP-Protocol-Version": "2025-11-25",
        }
        await http.post(f"{b}/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "fx__echo", "arguments": {"text": "hop"}},
        }
        answered = await http.post(f"{b}/mcp", json=call, headers=session)
        assert answered.status_code == 200
        assert answered.json()["result"]["content"][0]["text"] == "hop"
        ended = await http.delete(f"{b}/mcp", headers=session)
        assert ended.status_code == 204
        gone = await http.post(f"{a}/mcp", json=call, headers=session)
        assert gone.status_code == 404


async def test_answer_to_a_server_request_may_arrive_at_another_replica(
    replicas: tuple[str, str, str],
) -> None:
    a, b, key = replicas
    headers = {"Authorization": f"Bearer {key}", "Accept": ACCEPT}
    init = initialize_request({"sampling": {}})
    async with httpx.AsyncClient(timeout=20) as http:
        opened = await http.post(f"{a}/mcp", json=init, headers=headers)
        session = {**headers, "Mcp-Session-Id": opened.headers["mcp-session-id"]}
        call = {
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": {"name": "fx__sample", "arguments": {"prompt": "hi"}},
        }
        async with http.stream("POST", f"{b}/mcp", json=call, headers=session) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            buffer = b""
            request: dict[str, Any] | None = None
            async for chunk in stream.aiter_bytes():
                buffer += chunk
                messages = _events(buffer)
                if request is None and messages and messages[0].get("method") == "sampling/createMessage":
                    request = messages[0]
                    answer = {
                        "jsonrpc": "2.0",
                        "id": request["id"],
                        "result": {
                            "role": "assistant",
                            "content": {"type": "text", "text": "from A"},
                            "model": "m",
                        },
                    }
                    posted = await http.post(f"{a}/mcp", json=answer, headers=session)
                    assert posted.status_code == 202
        final = _events(buffer)[-1]
    assert request is not None
    assert final["id"] == 7
    assert "from A" in final["result"]["content"][0]["text"]


async def test_a_change_reaches_clients_of_every_replica_within_a_second(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main")
    admin = await admin_token(sessionmaker, settings)
    shared = settings.model_copy(update={"redis_url": REDIS})
    async with (
        serving_gateway(shared) as (a, gw_a),
        serving_gateway(shared) as (b, gw_b),
        connected(a, key, "legacy", gw_a) as (legacy_a, legacy_inbox_a),
        connected(a, key, "2026-07-28", gw_a) as (modern_a, modern_inbox_a),
        connected(b, key, "legacy", gw_b) as (legacy_b, legacy_inbox_b),
        connected(b, key, "2026-07-28", gw_b) as (modern_b, modern_inbox_b),
        httpx.AsyncClient(base_url=a, timeout=30) as http,
    ):
        clients = [(legacy_a, legacy_inbox_a), (modern_a, modern_inbox_a), (legacy_b, legacy_inbox_b)]
        clients.append((modern_b, modern_inbox_b))

        async def everyone_sees(absent: str) -> None:
            for client, inbox in clients:
                await inbox.expect(TOOLS_CHANGED, within=1.0)
                names = {t.name for t in (await client.list_tools(cache_mode="refresh")).tools}
                assert absent not in names and "fx__echo" in names

        # By the CLI, which is neither gateway process.
        await patchbay(settings, "server", "tools", "main", "--disable", "fx__add")
        await everyone_sees("fx__add")
        # Over REST on replica A: B's clients hear it as soon as A's do.
        switched = await http.patch(
            "/api/v1/orgs/default/servers/main/tools", json={"disable": ["fx__sample"]}, headers=admin
        )
        assert switched.status_code == 200, switched.text
        await everyone_sees("fx__sample")
        for client, _inbox in clients:
            with pytest.raises(MCPError, match="Unknown tool: 'fx__sample'"):
                await client.call_tool("fx__sample", {"prompt": "hi"})


@pytest.fixture
async def replicas_over_a_legacy_upstream(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[str, str, str]]:
    """A pre-2026 upstream: its elicitation parks the call in the gateway process that made it."""
    old = Upstream(name="old", command=stdio_command("--era", "legacy"))
    async with _two_replicas(settings, sessionmaker, old) as replicas:
        yield replicas


def _elicit_headers(key: str) -> dict[str, str]:
    """A 2026-07-28 client's headers for a call of the legacy upstream's ``elicit`` tool."""
    return {
        "Authorization": f"Bearer {key}",
        "Accept": ACCEPT,
        "Mcp-Protocol-Version": "2026-07-28",
        "Mcp-Method": "tools/call",
        "Mcp-Name": "old__elicit",
    }


def _modern_call(request_id: int, params: dict[str, Any]) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": {**params, "_meta": meta}}


async def test_an_input_required_retry_may_arrive_at_another_replica(
    replicas_over_a_legacy_upstream: tuple[str, str, str],
) -> None:
    a, b, key = replicas_over_a_legacy_upstream
    headers = _elicit_headers(key)
    call = {"name": "old__elicit", "arguments": {"message": "who?"}}
    async with httpx.AsyncClient(timeout=20) as http:
        first = await http.post(f"{a}/mcp", json=_modern_call(1, call), headers=headers)
        round_ = first.json()["result"]
        assert round_["resultType"] == "input_required"
        (request_key,) = round_["inputRequests"]
        answers = {request_key: {"action": "accept", "content": {"answer": "ada"}}}
        retry = {**call, "inputResponses": answers, "requestState": round_["requestState"]}
        relayed = await http.post(f"{b}/mcp", json=_modern_call(2, retry), headers=headers)
        # The same token again is spent, wherever it is sent.
        replayed = await http.post(f"{b}/mcp", json=_modern_call(3, retry), headers=headers)
    assert relayed.status_code == 200
    final = relayed.json()
    assert final["id"] == 2
    assert "ada" in final["result"]["content"][0]["text"]
    assert replayed.status_code == 400
    assert "requestState" in replayed.json()["error"]["message"]


async def test_a_round_never_retried_is_dropped_when_it_expires(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_upstreams(sessionmaker, settings, [Upstream(name="old", command=stdio_command("--era", "legacy"))])
    await make_server(sessionmaker, name="main", upstreams=["old"])
    key = await make_key(sessionmaker, settings, server="main")
    headers = _elicit_headers(key)
    call = {"name": "old__elicit", "arguments": {"message": "who?"}}
    async with serving_gateway(settings) as (url, gw), httpx.AsyncClient(timeout=20) as http:
        monkeypatch.setattr(exchange, "CONTINUATION_TTL", -1.0)  # parked already expired
        first = await http.post(f"{url}/mcp", json=_modern_call(1, call), headers=headers)
        assert first.json()["result"]["resultType"] == "input_required"
        (parked,) = gw.continuations.values()
        # Any later retry (here one with a token this replica never issued) drops expired rounds first.
        stale = {**call, "inputResponses": {}, "requestState": f"pbc1.{gw.node_id}.unknown"}
        refused = await http.post(f"{url}/mcp", json=_modern_call(2, stale), headers=headers)
        assert refused.status_code == 400
        assert gw.continuations == {}
        with pytest.raises(asyncio.CancelledError):
            await parked.task
        assert parked.task.cancelled()
