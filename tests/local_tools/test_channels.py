"""Every kind of local tool, through MCP (both eras), REST (three ways to authenticate) and the CLI,
against one table of expectations.

A channel is an adapter with one method, ``call(tool, arguments) -> (result, error)``. REST also
answers each error with the status the table names, and every channel leaves one audit row per call.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.services.local_tools import find_tool
from patchbay.services.orgs import add_member, ensure_default_org
from patchbay.services.tokens import create_token
from patchbay.services.tool_keys import create_tool_key
from patchbay.services.users import create_user
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.cli.conftest import Cli
from tests.harness import make_key, running_gateway
from tests.local_tools.support import (
    CASES,
    LIMIT_SETTINGS,
    TOOLS,
    Case,
    provision,
    read_document,
    set_document,
    with_limits,
)

pytestmark = pytest.mark.anyio

Outcome = tuple[dict[str, Any] | None, str | None]


class Channel(Protocol):
    async def call(self, tool: str, arguments: dict[str, Any]) -> Outcome: ...


class McpChannel:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def call(self, tool: str, arguments: dict[str, Any]) -> Outcome:
        result = await self.client.call_tool(tool, arguments)
        if result.is_error:
            block = result.content[0]
            assert isinstance(block, types.TextContent)
            return None, block.text
        assert result.structured_content is not None
        block = result.content[0]
        assert isinstance(block, types.TextContent)
        assert json.loads(block.text) == result.structured_content  # text and structure say the same
        return dict(result.structured_content), None


class CliChannel:
    def __init__(self, cli: Cli) -> None:
        self.cli = cli

    async def call(self, tool: str, arguments: dict[str, Any]) -> Outcome:
        env = {f"PATCHBAY_{k.upper()}": str(v) for k, v in LIMIT_SETTINGS.items()}
        result = await anyio.to_thread.run_sync(
            lambda: self.cli("exec", tool, "--json", json.dumps(arguments), "--compact", env=env)
        )
        if result.exit_code == 0:
            return json.loads(result.stdout), None
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.output
        return None, lines[0]


class RestChannel:
    """``POST /api/v1/tools/{id}/execute`` on a live gateway, by tool id, with one header set per tool."""

    def __init__(self, http: httpx.AsyncClient, ids: dict[str, str], headers: dict[str, dict[str, str]]) -> None:
        self.http, self.ids, self.headers = http, ids, headers
        self.status = 0

    async def call(self, tool: str, arguments: dict[str, Any]) -> Outcome:
        response = await self.http.post(
            f"/api/v1/tools/{self.ids[tool]}/execute", json=arguments, headers=self.headers[tool]
        )
        self.status = response.status_code
        body = response.json()
        if response.status_code == 200:
            return body, None
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        return None, body["error"]["message"]


async def rest_credentials(
    how: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Tool ids by name, and the headers that authenticate a call to each tool ``how``."""
    secret = settings.resolve_secret_key()
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        tools = {name: await find_tool(session, org_id=org.id, name=name) for name, _path, _kind in TOOLS}
        headers: dict[str, dict[str, str]] = {}
        if how == "rest-toolkey":
            for name, tool in tools.items():
                _key, raw = await create_tool_key(
                    session,
                    org_id=org.id,
                    tool=tool,
                    name="",
                    scopes=[],
                    expires_in=None,
                    rate_limit=None,
                    secret=secret,
                )
                headers[name] = {"X-Tool-Key": raw}
        elif how == "rest-member":
            user = await create_user(session, email="bob@example.com", password=None, admin=False, join_default=False)
            await add_member(session, org=org, user_id=user.id, role="member")
            _row, token = await create_token(session, user=user, name="t", expires_in=None, secret=secret)
            headers = {name: {"Authorization": f"Bearer {token}"} for name in tools}
        await session.commit()
    if how == "rest-key":
        key = await make_key(sessionmaker, settings, server="docs")
        headers = {name: {"X-API-Key": key} for name in tools}
    return {name: tool.id for name, tool in tools.items()}, headers


@asynccontextmanager
async def open_channel(
    name: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], cli: Cli
) -> AsyncIterator[Channel]:
    if name == "cli":
        yield CliChannel(cli)
        return
    if name.startswith("rest"):
        ids, headers = await rest_credentials(name, settings, sessionmaker)
        async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=60) as http:
            yield RestChannel(http, ids, headers)
        return
    key = await make_key(sessionmaker, settings, server="docs")
    async with running_gateway(settings) as url, Client(f"{url}/mcp/k/{key}", mode=name) as client:
        yield McpChannel(client)


async def check(channel: Channel, sessionmaker: async_sessionmaker[AsyncSession], case: Case) -> None:
    await set_document(sessionmaker, case.document)
    before, version = await read_document(sessionmaker)
    result, error = await channel.call(case.tool, case.arguments)
    after, new_version = await read_document(sessionmaker)
    if isinstance(channel, RestChannel):
        assert channel.status == (case.http if case.error is not None else 200), f"{case.id}: {channel.status}"
    if case.error is not None:
        assert error is not None and case.error in error, f"{case.id}: {error!r} lacks {case.error!r}"
        assert (after, new_version) == (before, version), f"{case.id}: a failed call changed the document"
        return
    assert error is None, f"{case.id}: {error}"
    assert result is not None
    assert {k: result[k] for k in case.result or {}} == case.result, f"{case.id}: {result}"
    wrote = case.after is not None
    assert result["version"] == new_version == version + (1 if wrote else 0), case.id
    assert after == (case.after if wrote else before), case.id


@pytest.mark.parametrize("channel", ["legacy", "2026-07-28", "rest-key", "rest-toolkey", "rest-member", "cli"])
async def test_every_tool_kind_behaves_the_same_on_every_channel(
    channel: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], cli: Cli
) -> None:
    with_limits(settings)
    await provision(sessionmaker)
    async with open_channel(channel, settings, sessionmaker, cli) as opened:
        for case in CASES:
            await check(opened, sessionmaker, case)
    # The gateway has stopped (its audit queue is drained): one row per call, on the channel that carried it.
    async with sessionmaker() as session:
        rows = await session.execute(
            select(AuditRecord.channel, func.count())
            .where(AuditRecord.method == "tools/call")
            .group_by(AuditRecord.channel)
        )
        counted = dict(rows.all())
    expected = "api" if channel.startswith("rest") else ("cli" if channel == "cli" else "mcp")
    assert counted == {expected: len(CASES)}
