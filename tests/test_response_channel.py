"""The response channel: which server→client requests a 2026-07-28 client can be asked."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.channel import Era, ResponseChannel
from patchbay.mcp.protocol import METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY
from patchbay.state.memory import MemoryStore

pytestmark = pytest.mark.anyio


def _channel(capabilities: JSONObject, era: Era = "modern") -> ResponseChannel:
    return ResponseChannel(era=era, store=MemoryStore(), client_capabilities=capabilities)


def test_only_a_modern_client_that_declared_input_capabilities_may_be_asked() -> None:
    assert not _channel({}).may_ask_input()
    assert not _channel({"experimental": {}}).may_ask_input()
    for capability in ("sampling", "elicitation", "roots"):
        assert _channel({capability: {}}).may_ask_input()
    assert not _channel({"sampling": {}}, era="legacy").may_ask_input()


async def _ask(channel: ResponseChannel, message: JSONObject) -> JSONObject:
    async with asyncio.timeout(5):  # a request that became an input round would wait for the client
        return await channel.request(message)


async def test_a_modern_client_that_cannot_be_asked_never_gets_an_input_round() -> None:
    channel = _channel({})
    woken: list[bool] = []
    channel.on_activity = lambda: woken.append(True)
    # The gateway is the upstream's client: it answers a ping itself.
    assert await _ask(channel, {"jsonrpc": "2.0", "id": 7, "method": "ping"}) == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {},
    }
    unknown = await _ask(channel, {"jsonrpc": "2.0", "id": 8, "method": "tasks/whatever"})
    assert unknown["id"] == 8 and unknown["error"]["code"] == METHOD_NOT_FOUND
    assert "2026-07-28" in unknown["error"]["message"]
    refused = await _ask(channel, {"jsonrpc": "2.0", "id": 9, "method": "roots/list"})
    assert refused["error"]["code"] == MISSING_CLIENT_CAPABILITY
    assert (channel.input_ready, channel.input_round, woken) == (False, None, [])


async def test_a_modern_client_that_can_be_asked_gets_a_round() -> None:
    channel = _channel({"roots": {}})
    # Still only for the three: a ping is answered here, anything else refused, for every such client.
    assert (await _ask(channel, {"jsonrpc": "2.0", "id": 1, "method": "ping"}))["result"] == {}
    refused = await _ask(channel, {"jsonrpc": "2.0", "id": 2, "method": "tasks/whatever"})
    assert refused["error"]["code"] == METHOD_NOT_FOUND
    assert not channel.input_ready
    asked = asyncio.create_task(channel.request({"jsonrpc": "2.0", "id": 3, "method": "roots/list"}))
    await asyncio.sleep(0)
    assert channel.input_ready
    found = channel.take_round()
    assert found is not None and [r["method"] for r in found.requests.values()] == ["roots/list"]
    (future,) = found.futures.values()
    future.set_result({"result": {"roots": []}})
    assert await asked == {"jsonrpc": "2.0", "id": 3, "result": {"roots": []}}
