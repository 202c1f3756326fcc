"""Every kind of local tool, through MCP (both eras) and the CLI, against one table of expectations.

A channel is an adapter with one method, ``call(tool, arguments) -> (result, error)``; REST
becomes a third adapter.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import anyio
import mcp_types as types
import pytest
from mcp import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.cli.conftest import Cli
from tests.harness import make_key, running_gateway
from tests.local_tools.support import CASES, LIMIT_SETTINGS, Case, provision, read_document, set_document, with_limits

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


@asynccontextmanager
async def open_channel(
    name: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], cli: Cli
) -> AsyncIterator[Channel]:
    if name == "cli":
        yield CliChannel(cli)
        return
    key = await make_key(sessionmaker, settings, server="docs")
    async with running_gateway(settings) as url, Client(f"{url}/mcp/k/{key}", mode=name) as client:
        yield McpChannel(client)


async def check(channel: Channel, sessionmaker: async_sessionmaker[AsyncSession], case: Case) -> None:
    await set_document(sessionmaker, case.document)
    before, version = await read_document(sessionmaker)
    result, error = await channel.call(case.tool, case.arguments)
    after, new_version = await read_document(sessionmaker)
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


@pytest.mark.parametrize("channel", ["legacy", "2026-07-28", "cli"])
async def test_every_tool_kind_behaves_the_same_on_every_channel(
    channel: str, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], cli: Cli
) -> None:
    with_limits(settings)
    await provision(sessionmaker)
    async with open_channel(channel, settings, sessionmaker, cli) as opened:
        for case in CASES:
            await check(opened, sessionmaker, case)
