"""An open change stream lives no longer than its key: revoked or expired, the stream ends and
nothing more reaches it, while other keys' clients keep being told."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import anyio
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.runtime import Gateway
from patchbay.settings import Settings
from patchbay.store.changes import announce_change
from patchbay.store.models import ApiKey
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, make_key, make_server, serving_gateway
from tests.web.live import MODES, TOOLS_CHANGED, Inbox, connected, patchbay

pytestmark = pytest.mark.anyio


@pytest.fixture
async def gateway(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[str, str, str, Gateway]]:
    """A served gateway and two keys of two users on server ``main``: (url, doomed, other, gateway)."""
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    doomed = await make_key(sessionmaker, settings, server="main")
    other = await make_key(sessionmaker, settings, server="main", email="bob@example.com")
    async with serving_gateway(settings) as (url, gw):
        yield url, doomed, other, gw


async def _ended(gw: Gateway, inbox: Inbox, mode: str, *, open_after: int, reason: str) -> None:
    """Wait until the gateway holds ``open_after`` streams; a 2026-07-28 client is told why its ended."""
    with anyio.fail_after(10):
        await gw.live.until_listening(open_after, at_most=True)
        if mode == "2026-07-28":
            assert reason in str((await inbox.until_lost()).__cause__)


@pytest.mark.parametrize("mode", MODES)
async def test_revoking_a_key_ends_its_streams_and_it_hears_no_more_changes(
    gateway: tuple[str, str, str, Gateway], settings: Settings, mode: str
) -> None:
    url, doomed, other, gw = gateway
    async with connected(url, doomed, mode, gw) as (_, revoked), connected(url, other, mode, gw) as (_, bystander):
        assert gw.live.listening == 2
        await patchbay(settings, "key", "revoke", doomed[:12])
        await _ended(gw, revoked, mode, open_after=1, reason="the API key was revoked")

        await patchbay(settings, "server", "tools", "main", "--disable", "fx__echo")
        await bystander.expect(TOOLS_CHANGED)
        assert revoked.seen == [], "a revoked key's client is told nothing, not even about its revocation"
        assert gw.live.listening == 1


@pytest.mark.parametrize("mode", MODES)
async def test_a_stream_ends_when_its_key_expires_without_any_other_change(
    gateway: tuple[str, str, str, Gateway], sessionmaker: async_sessionmaker[AsyncSession], mode: str
) -> None:
    url, doomed, _other, gw = gateway
    async with connected(url, doomed, mode, gw) as (_, inbox):
        soon = datetime.now(UTC) + timedelta(seconds=1)
        async with sessionmaker() as session:  # as an edit of the key's expiry would: the gateways learn it
            await session.execute(update(ApiKey).where(ApiKey.prefix == doomed[:12]).values(expires_at=soon))
            await announce_change(session)
            await session.commit()
            assert await session.scalar(select(ApiKey.revoked_at).where(ApiKey.prefix == doomed[:12])) is None
        await _ended(gw, inbox, mode, open_after=0, reason="the API key expired")
        assert datetime.now(UTC) >= soon
        assert inbox.seen == []
