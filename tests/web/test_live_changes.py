"""Runtime changes reach connected SDK clients of both eras at once, and lists and calls obey them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.runtime import Gateway
from patchbay.services.keys import set_key_tools
from patchbay.services.orgs import ensure_default_org
from patchbay.services.server_changes import (
    detach_tools,
    link_upstreams,
    override_tools,
    unlink_upstreams,
)
from patchbay.services.servers import get_server, set_tools_enabled
from patchbay.settings import Settings
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, make_key, make_server, serving_gateway

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]
TOOLS_CHANGED = "notifications/tools/list_changed"
PROMPTS_CHANGED = "notifications/prompts/list_changed"
RESOURCES_CHANGED = "notifications/resources/list_changed"


class Inbox:
    """Change notifications a client received, with a way to wait for the next one."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._arrived = anyio.Event()

    def put(self, method: str) -> None:
        self.seen.append(method)
        self._arrived.set()

    async def expect(self, method: str, *, within: float = 5.0) -> None:
        with anyio.fail_after(within):
            while method not in self.seen:
                self._arrived = anyio.Event()
                await self._arrived.wait()
        self.seen.remove(method)


_EVENTS = {
    types.ToolListChangedNotification: TOOLS_CHANGED,
    types.PromptListChangedNotification: PROMPTS_CHANGED,
    types.ResourceListChangedNotification: RESOURCES_CHANGED,
}


@asynccontextmanager
async def connected(url: str, key: str, mode: str, gw: Gateway) -> AsyncIterator[tuple[Client, Inbox]]:
    """An SDK client of ``mode`` holding its change stream open (GET stream or subscriptions/listen)."""
    inbox = Inbox()
    before = gw.live.listening

    async def on_message(message: object) -> None:
        for kind, method in _EVENTS.items():
            if isinstance(message, kind):
                inbox.put(method)

    async with Client(f"{url}/mcp/k/{key}", mode=mode, message_handler=on_message) as client:
        if mode == "legacy":
            with anyio.fail_after(10):
                await gw.live.until_listening(before + 1)
            yield client, inbox
            return
        async with (
            client.listen(tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True) as sub,
            anyio.create_task_group() as tg,
        ):
            assert sub.honored.tools_list_changed

            async def drain() -> None:
                async for event in sub:
                    inbox.put({"ToolsListChanged": TOOLS_CHANGED}.get(type(event).__name__, type(event).__name__))

            tg.start_soon(drain)
            yield client, inbox
            tg.cancel_scope.cancel()


Change = Callable[[AsyncSession], Awaitable[Any]]


async def change(sessionmaker: async_sessionmaker[AsyncSession], work: Change) -> None:
    """Make a change the way the CLI does: its own transaction on its own connection."""
    async with sessionmaker() as session:
        await work(session)
        await session.commit()


async def _server(session: AsyncSession, name: str = "main") -> Any:
    org = await ensure_default_org(session)
    return await get_server(session, org_id=org.id, name_or_slug=name)


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


@pytest.mark.parametrize("mode", MODES)
async def test_disabling_a_tool_notifies_clients_and_the_next_list_and_call_obey(
    gateway: tuple[str, str, Gateway], sessionmaker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    url, key, gw = gateway
    async with connected(url, key, mode, gw) as (client, inbox):
        assert "fx__echo" in await _names(client)

        async def disable(session: AsyncSession) -> None:
            await set_tools_enabled(session, server=await _server(session), enable=[], disable=["fx__echo"])

        await change(sessionmaker, disable)
        await inbox.expect(TOOLS_CHANGED)
        assert "fx__echo" not in await _names(client)
        with pytest.raises(MCPError, match="Unknown tool: 'fx__echo'"):
            await client.call_tool("fx__echo", {"text": "x"})

        async def enable(session: AsyncSession) -> None:
            await set_tools_enabled(session, server=await _server(session), enable=["fx__echo"], disable=[])

        await change(sessionmaker, enable)
        await inbox.expect(TOOLS_CHANGED)
        assert "fx__echo" in await _names(client)
        assert (await client.call_tool("fx__echo", {"text": "back"})).content[0].text == "back"  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_renaming_describing_and_detaching_reach_clients(
    gateway: tuple[str, str, Gateway], sessionmaker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    url, key, gw = gateway
    async with connected(url, key, mode, gw) as (client, inbox):

        async def rename(session: AsyncSession) -> None:
            await override_tools(
                session,
                server=await _server(session),
                names={"fx__echo": "say"},
                descriptions={"fx__add": "Adds two numbers, described by the gateway."},
            )

        await change(sessionmaker, rename)
        await inbox.expect(TOOLS_CHANGED)
        listed = {t.name: t for t in (await client.list_tools(cache_mode="refresh")).tools}
        assert "say" in listed and "fx__echo" not in listed
        assert listed["fx__add"].description == "Adds two numbers, described by the gateway."
        assert (await client.call_tool("say", {"text": "renamed"})).content[0].text == "renamed"  # type: ignore[union-attr]

        async def detach(session: AsyncSession) -> None:
            await detach_tools(session, server=await _server(session), tools=["say"])

        await change(sessionmaker, detach)
        await inbox.expect(TOOLS_CHANGED)
        assert "say" not in await _names(client)
        with pytest.raises(MCPError, match="Unknown tool: 'say'"):
            await client.call_tool("say", {"text": "x"})


@pytest.mark.parametrize("mode", MODES)
async def test_removing_and_adding_an_upstream_changes_tools_prompts_and_resources(
    gateway: tuple[str, str, Gateway], sessionmaker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    url, key, gw = gateway
    async with connected(url, key, mode, gw) as (client, inbox):
        assert [p.name for p in (await client.list_prompts()).prompts] == ["fx__greet"]

        async def unlink(session: AsyncSession) -> None:
            await unlink_upstreams(session, server=await _server(session), upstreams=["fx"])

        await change(sessionmaker, unlink)
        for method in (TOOLS_CHANGED, PROMPTS_CHANGED, RESOURCES_CHANGED):
            await inbox.expect(method)
        assert await _names(client) == set()
        with pytest.raises(MCPError):
            await client.call_tool("fx__echo", {"text": "x"})

        async def link(session: AsyncSession) -> None:
            await link_upstreams(session, server=await _server(session), upstreams=["fx"])

        await change(sessionmaker, link)
        for method in (TOOLS_CHANGED, PROMPTS_CHANGED, RESOURCES_CHANGED):
            await inbox.expect(method)
        assert "fx__echo" in await _names(client)
        assert [p.name for p in (await client.list_prompts(cache_mode="refresh")).prompts] == ["fx__greet"]


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

        async def narrow(session: AsyncSession) -> None:
            await set_key_tools(session, prefix=key[:12], org_id=None, allow=[("fx__echo", "r")])

        await change(sessionmaker, narrow)
        await inbox.expect(TOOLS_CHANGED)
        assert await _names(client) == {"fx__echo"}
        with pytest.raises(MCPError, match="not allowed"):
            await client.call_tool("fx__add", {"a": 1, "b": 2})
        assert bystander.seen == []
