"""Log messages from an upstream reach a client only at the level it asked for, whatever the upstream's era."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import mcp_types as types
import pytest
from mcp import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.fixtures.servers import running_fixture
from tests.harness import Upstream, add_upstreams, make_key, make_server, running_gateway

pytestmark = pytest.mark.anyio


@pytest.fixture
async def legacy_upstream_gateway(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[str]:
    """A gateway over a pre-2026 upstream, which logs whatever the client asked: the gateway must filter."""
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(running_fixture("streamable-http", era="legacy"))
        await add_upstreams(sessionmaker, settings, [Upstream(name="old", url=url)])
        await make_server(sessionmaker, name="main", upstreams=["old"])
        key = await make_key(sessionmaker, settings, server="main")
        base = await stack.enter_async_context(running_gateway(settings))
        yield f"{base}/mcp/k/{key}"


async def _logged(url: str, mode: str, level: types.LoggingLevel | None, set_level: bool = False) -> list[str]:
    seen: list[str] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        seen.append(str(params.data))

    async with Client(url, mode=mode, logging_callback=on_log, log_level=None if set_level else level) as client:
        if set_level and level is not None:
            await client.set_logging_level(level)
        result = await client.call_tool("old__log", {"message": "hello"})
        assert not result.is_error
    return seen


async def test_a_2026_client_gets_log_messages_only_when_it_asked_for_them(legacy_upstream_gateway: str) -> None:
    url = legacy_upstream_gateway
    assert await _logged(url, "2026-07-28", None) == []
    assert await _logged(url, "2026-07-28", "info") == ["hello"]
    assert await _logged(url, "2026-07-28", "warning") == []


async def test_a_legacy_client_gets_log_messages_down_to_the_level_it_set(legacy_upstream_gateway: str) -> None:
    url = legacy_upstream_gateway
    assert await _logged(url, "legacy", None) == ["hello"]
    assert await _logged(url, "legacy", "error", set_level=True) == []
