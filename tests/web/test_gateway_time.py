"""The gateway in front of mcp-server-time (PyPI, stdio), driven by the official SDK client in both eras."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.services.keys import revoke_key
from patchbay.settings import Settings
from patchbay.store.models import ApiKey
from tests.harness import Upstream, add_upstreams, initialize_request, make_key, make_server, running_gateway

pytestmark = pytest.mark.anyio

TIME = Upstream(name="time", command=[sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"])
MODES = ["legacy", "2026-07-28"]


@pytest.fixture
async def gateway(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[str]:
    await add_upstreams(sessionmaker, settings, [TIME])
    await make_server(sessionmaker, name="assistant", upstreams=["time"])
    async with running_gateway(settings) as url:
        yield url


@pytest.mark.parametrize("mode", MODES)
async def test_client_lists_and_calls_upstream_tools(
    gateway: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    key = await make_key(sessionmaker, settings, server="assistant")
    async with Client(f"{gateway}/mcp/k/{key}", mode=mode) as client:
        tools = await client.list_tools()
        names = {t.name for t in tools.tools}
        assert names == {"time__get_current_time", "time__convert_time"}
        result = await client.call_tool("time__get_current_time", {"timezone": "Europe/Paris"})
        assert not result.is_error
        assert result.structured_content is not None
        assert result.structured_content["timezone"] == "Europe/Paris"


@pytest.mark.parametrize("mode", MODES)
async def test_key_sees_and_calls_only_allowed_tools(
    gateway: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    key = await make_key(sessionmaker, settings, server="assistant", allow=[("time__convert_time", "rw")])
    async with Client(f"{gateway}/mcp/k/{key}", mode=mode) as client:
        tools = await client.list_tools()
        assert [t.name for t in tools.tools] == ["time__convert_time"]
        with pytest.raises(MCPError) as denied:
            await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert "time__get_current_time" in str(denied.value)
        with pytest.raises(MCPError) as unknown:
            await client.call_tool("time__nope", {})
        assert "time__nope" in str(unknown.value)


async def test_revoked_key_is_rejected_on_the_next_request(
    gateway: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessionmaker, settings, server="assistant")
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    body = initialize_request()
    async with httpx.AsyncClient(base_url=gateway) as http:
        ok = await http.post("/mcp", json=body, headers=headers)
        assert ok.status_code == 200
        async with sessionmaker() as session:
            await revoke_key(session, prefix=key[:12])
            await session.commit()
        refused = await http.post("/mcp", json=body, headers=headers)
    assert refused.status_code == 401
    assert "revoked" in refused.headers["www-authenticate"]


async def test_expired_and_unknown_keys_get_401(
    gateway: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await make_key(sessionmaker, settings, server="assistant")
    async with sessionmaker() as session:
        past = datetime.now(UTC) - timedelta(minutes=1)
        await session.execute(update(ApiKey).where(ApiKey.prefix == key[:12]).values(expires_at=past))
        await session.commit()
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    async with httpx.AsyncClient(base_url=gateway) as http:
        expired = await http.post("/mcp", json=ping, headers={"Authorization": f"Bearer {key}"})
        unknown = await http.post("/mcp", json=ping, headers={"X-API-Key": "pb_" + "x" * 43})
        missing = await http.post("/mcp", json=ping)
    for response, words in ((expired, "expired"), (unknown, "unknown"), (missing, "missing")):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer ")
        assert words in response.json()["error"]["message"]
