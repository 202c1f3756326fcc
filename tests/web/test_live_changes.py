"""Runtime changes made with the CLI or REST reach connected SDK clients of both eras at once,
and the next list and call obey them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.runtime import Gateway
from patchbay.settings import Settings
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, make_key, make_server, serving_gateway
from tests.web.live import MODES, PROMPTS_CHANGED, RESOURCES_CHANGED, TOOLS_CHANGED, admin_token, connected, patchbay

pytestmark = pytest.mark.anyio


@pytest.fixture
async def gateway(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[str, str, Gateway]]:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main")
    async with AsyncExitStack() as stack:
        url, gw = await stack.enter_async_context(serving_gateway(settings))
        yield url, key, gw


async def _names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools(cache_mode="refresh")).tools}


async def _echo(client: Client, name: str, text: str) -> str:
    return (await client.call_tool(name, {"text": text})).content[0].text  # type: ignore[union-attr,no-any-return]


@pytest.mark.parametrize("mode", MODES)
async def test_disabling_a_tool_notifies_clients_and_the_next_list_and_call_obey(
    gateway: tuple[str, str, Gateway], settings: Settings, mode: str
) -> None:
    url, key, gw = gateway
    async with connected(url, key, mode, gw) as (client, inbox):
        assert "fx__echo" in await _names(client)

        await patchbay(settings, "server", "tools", "main", "--disable", "fx__echo")
        await inbox.expect(TOOLS_CHANGED)
        assert "fx__echo" not in await _names(client)
        with pytest.raises(MCPError, match="Unknown tool: 'fx__echo'"):
            await client.call_tool("fx__echo", {"text": "x"})

        await patchbay(settings, "server", "tools", "main", "--enable", "fx__echo")
        await inbox.expect(TOOLS_CHANGED)
        assert "fx__echo" in await _names(client)
        assert await _echo(client, "fx__echo", "back") == "back"


@pytest.mark.parametrize("mode", MODES)
async def test_a_change_made_over_rest_reaches_clients(
    gateway: tuple[str, str, Gateway], settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    url, key, gw = gateway
    admin = await admin_token(sessionmaker, settings)
    async with connected(url, key, mode, gw) as (client, inbox), httpx.AsyncClient(base_url=url, timeout=30) as http:
        switched = await http.patch(
            "/api/v1/orgs/default/servers/main/tools", json={"disable": ["fx__echo"]}, headers=admin
        )
        assert switched.status_code == 200, switched.text
        await inbox.expect(TOOLS_CHANGED)
        assert "fx__echo" not in await _names(client)
        with pytest.raises(MCPError, match="Unknown tool: 'fx__echo'"):
            await client.call_tool("fx__echo", {"text": "x"})


@pytest.mark.parametrize("mode", MODES)
async def test_renaming_describing_detaching_and_attaching_reach_clients(
    gateway: tuple[str, str, Gateway], settings: Settings, mode: str
) -> None:
    url, key, gw = gateway
    async with connected(url, key, mode, gw) as (client, inbox):
        await patchbay(settings, "server", "tools", "main", "--rename", "fx__echo=say", "--describe", "fx__add=Adds.")
        await inbox.expect(TOOLS_CHANGED)
        listed = {t.name: t for t in (await client.list_tools(cache_mode="refresh")).tools}
        assert "say" in listed and "fx__echo" not in listed
        assert listed["fx__add"].description == "Adds."
        assert await _echo(client, "say", "renamed") == "renamed"

        await patchbay(settings, "server", "tools", "main", "--detach", "say")
        await inbox.expect(TOOLS_CHANGED)
        assert not {"say", "fx__echo"} & await _names(client)
        with pytest.raises(MCPError, match="Unknown tool: 'say'"):
            await client.call_tool("say", {"text": "x"})

        await patchbay(settings, "server", "tools", "main", "--attach", "fx__echo")
        await inbox.expect(TOOLS_CHANGED)
        assert "fx__echo" in await _names(client)
        assert await _echo(client, "fx__echo", "attached") == "attached"


@pytest.mark.parametrize("mode", MODES)
async def test_removing_and_adding_an_upstream_changes_tools_prompts_and_resources(
    gateway: tuple[str, str, Gateway], settings: Settings, mode: str
) -> None:
    url, key, gw = gateway
    async with connected(url, key, mode, gw) as (client, inbox):
        assert [p.name for p in (await client.list_prompts()).prompts] == ["fx__greet"]
        assert [r.name for r in (await client.list_resources()).resources] == ["hello"]

        await patchbay(settings, "server", "upstreams", "main", "--remove", "fx")
        for method in (TOOLS_CHANGED, PROMPTS_CHANGED, RESOURCES_CHANGED):
            await inbox.expect(method)
        assert await _names(client) == set()
        # Without an upstream the server has no prompts or resources at all.
        with pytest.raises(MCPError, match="Method not found"):
            await client.list_prompts(cache_mode="refresh")
        with pytest.raises(MCPError, match="Method not found"):
            await client.list_resources(cache_mode="refresh")
        with pytest.raises(MCPError):
            await client.call_tool("fx__echo", {"text": "x"})
        with pytest.raises(MCPError):
            await client.get_prompt("fx__greet", {"name": "ada"})

        await patchbay(settings, "server", "upstreams", "main", "--add", "fx")
        for method in (TOOLS_CHANGED, PROMPTS_CHANGED, RESOURCES_CHANGED):
            await inbox.expect(method)
        assert "fx__echo" in await _names(client)
        assert [p.name for p in (await client.list_prompts(cache_mode="refresh")).prompts] == ["fx__greet"]
        assert [r.name for r in (await client.list_resources(cache_mode="refresh")).resources] == ["hello"]
        greeting = await client.get_prompt("fx__greet", {"name": "ada"})
        assert "ada" in str(greeting.messages[0].content)


@pytest.mark.parametrize("mode", MODES)
async def test_a_key_permission_change_reaches_only_that_keys_clients(
    gateway: tuple[str, str, Gateway],
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    mode: str,
) -> None:
    url, key, gw = gateway
    other = await make_key(sessionmaker, settings, server="main", email="bob@example.com")
    async with connected(url, key, mode, gw) as (client, inbox), connected(url, other, mode, gw) as (_, bystander):
        await patchbay(settings, "key", "update", key[:12], "--allow", "fx__echo:r")
        await inbox.expect(TOOLS_CHANGED)
        assert await _names(client) == {"fx__echo"}
        with pytest.raises(MCPError, match="not allowed"):
            await client.call_tool("fx__add", {"a": 1, "b": 2})
        assert bystander.seen == []
