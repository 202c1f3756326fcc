"""Local tools over MCP: listed beside upstream tools, permitted per key, rate-limited, changed by the CLI at once."""

from __future__ import annotations

import sys

import anyio
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.mcp.protocol import RATE_LIMITED
from patchbay.services.local_tools import attach_tool, find_tool
from patchbay.services.orgs import ensure_default_org
from patchbay.services.servers import get_server
from patchbay.settings import Settings
from patchbay.store.models import ApiKey, AuditRecord, Tool
from tests.cli.conftest import Cli
from tests.harness import Upstream, add_upstreams, make_key, make_server, running_gateway
from tests.local_tools.support import provision

pytestmark = pytest.mark.anyio

TIME = Upstream(name="time", command=[sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"])


async def test_local_tools_are_listed_beside_upstream_tools_with_their_annotations(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_upstreams(sessionmaker, settings, [TIME])
    await provision(sessionmaker)
    await make_server(sessionmaker, name="mixed", upstreams=["time"])
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        mixed = await get_server(session, org_id=org.id, name_or_slug="mixed")
        for name in ("find_items", "add_item", "drop_item"):
            await attach_tool(session, server=mixed, tool=await find_tool(session, org_id=org.id, name=name))
        await session.commit()
    key = await make_key(sessionmaker, settings, server="mixed")
    async with running_gateway(settings) as url, Client(f"{url}/mcp/k/{key}", mode="2026-07-28") as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        assert set(listed) == {"time__get_current_time", "time__convert_time", "find_items", "add_item", "drop_item"}
        hints = {
            name: (t.annotations.read_only_hint, t.annotations.destructive_hint)
            for name, t in listed.items()
            if name in ("find_items", "add_item", "drop_item") and t.annotations is not None
        }
        assert hints == {"find_items": (True, None), "add_item": (False, False), "drop_item": (False, True)}
        assert listed["find_items"].input_schema["required"] == ["expression"]
        found = await client.call_tool("find_items", {"expression": "[0].name"})
        assert found.structured_content == {"result": "apple", "version": 1}
        clock = await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        assert not clock.is_error


async def test_a_read_only_grant_reaches_query_tools_but_not_writers(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await provision(sessionmaker)
    key = await make_key(sessionmaker, settings, server="docs", allow=[("find_items", "r"), ("read_meta", "r")])
    async with running_gateway(settings) as url, Client(f"{url}/mcp/k/{key}", mode="legacy") as client:
        assert {t.name for t in (await client.list_tools()).tools} == {"find_items", "read_meta"}
        assert not (await client.call_tool("read_meta", {})).is_error
        with pytest.raises(MCPError) as denied:
            await client.call_tool("add_item", {"value": 1})
        assert "Tool 'add_item' is not allowed" in str(denied.value)
    async with sessionmaker() as session:
        query = select(AuditRecord.tool_name, AuditRecord.status).where(AuditRecord.tool_id.is_not(None))
        statuses = (await session.execute(query)).all()
    assert sorted(statuses) == [("add_item", "denied"), ("read_meta", "ok")]


@pytest.mark.parametrize("limited", ["tool", "key"])
async def test_a_call_over_a_rate_limit_is_a_json_rpc_error_that_says_when_to_retry(
    limited: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await provision(sessionmaker)
    key = await make_key(sessionmaker, settings, server="docs")
    async with sessionmaker() as session:
        if limited == "tool":
            tool = await session.scalar(select(Tool).where(Tool.name == "read_meta"))
            assert tool is not None
            tool.rate_limit = 2
        else:
            api_key = await session.scalar(select(ApiKey).where(ApiKey.prefix == key[:12]))
            assert api_key is not None
            api_key.rate_limit = 2
        await session.commit()
    async with running_gateway(settings) as url, Client(f"{url}/mcp/k/{key}", mode="2026-07-28") as client:
        for _ in range(2):
            assert not (await client.call_tool("read_meta", {})).is_error
        with pytest.raises(MCPError) as refused:
            await client.call_tool("read_meta", {})
    assert refused.value.code == RATE_LIMITED
    assert "rate limit of 2 calls per minute" in refused.value.message
    assert isinstance(refused.value.data, dict)
    assert 1 <= refused.value.data["retryAfter"] <= 30


async def test_tools_attached_or_detached_with_the_cli_change_a_running_gateway_at_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], cli: Cli
) -> None:
    await provision(sessionmaker)
    create = await anyio.to_thread.run_sync(lambda: cli("server", "create", "fresh"))
    assert create.exit_code == 0, create.output
    key = await make_key(sessionmaker, settings, server="fresh")
    async with running_gateway(settings) as url, Client(f"{url}/mcp/k/{key}", mode="legacy") as client:
        assert (await client.list_tools()).tools == []
        attached = await anyio.to_thread.run_sync(
            lambda: cli("tool", "attach", "find_items", "--server", "fresh", "--name", "search")
        )
        assert attached.exit_code == 0, attached.output
        assert [t.name for t in (await client.list_tools()).tools] == ["search"]
        assert (await client.call_tool("search", {"expression": "length(@)"})).structured_content == {
            "result": 2,
            "version": 1,
        }
        detached = await anyio.to_thread.run_sync(lambda: cli("tool", "detach", "find_items", "--server", "fresh"))
        assert detached.exit_code == 0, detached.output
        assert (await client.list_tools()).tools == []
        with pytest.raises(MCPError, match="Unknown tool"):
            await client.call_tool("search", {"expression": "@"})
