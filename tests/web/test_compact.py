"""Compact mode: a search tool and a call tool instead of every definition; permissions still hold."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from mcp.shared.exceptions import MCPError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.runtime import Gateway
from patchbay.services.server_changes import set_server_options
from patchbay.settings import Settings
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, make_key, make_server, serving_gateway
from tests.web.live import MODES, TOOLS_CHANGED, change, connected, main_server

pytestmark = pytest.mark.anyio


@pytest.fixture
async def compact_gateway(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[str, str, Gateway]]:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main", allow=[("fx__echo", "r"), ("fx__whoami", "rw")])
    async with serving_gateway(settings) as (url, gw):
        yield url, key, gw


@pytest.mark.parametrize("mode", MODES)
async def test_compact_mode_searches_and_calls_only_what_the_key_may_use(
    compact_gateway: tuple[str, str, Gateway], sessionmaker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    url, key, gw = compact_gateway
    async with connected(url, key, mode, gw) as (client, inbox):

        async def compact_on(session: AsyncSession) -> None:
            await set_server_options(session, server=await main_server(session), compact=True)

        await change(sessionmaker, compact_on)
        await inbox.expect(TOOLS_CHANGED)
        assert [t.name for t in (await client.list_tools(cache_mode="refresh")).tools] == ["search_tools", "call_tool"]

        found = await client.call_tool("search_tools", {"query": "echo"})
        assert found.structured_content is not None
        assert [t["name"] for t in found.structured_content["tools"]] == ["fx__echo"]
        everything = await client.call_tool("search_tools", {"query": ""})
        assert everything.structured_content is not None
        assert everything.structured_content["total"] == 2, "only the tools this key may use"

        echoed = await client.call_tool("call_tool", {"name": "fx__echo", "arguments": {"text": "via compact"}})
        assert echoed.content[0].text == "via compact"  # type: ignore[union-attr]
        with pytest.raises(MCPError, match="'fx__add' is not allowed"):
            await client.call_tool("call_tool", {"name": "fx__add", "arguments": {"a": 1, "b": 2}})
        with pytest.raises(MCPError, match="call_tool needs the name of a tool"):
            await client.call_tool("call_tool", {"arguments": {}})
