"""Tokens expire and are refreshed: before expiry, after an upstream 401, once under concurrency."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import select, text, update

from patchbay.oauth.owner import Owner
from patchbay.store.models import OAuthToken, utcnow
from tests.oauth.conftest import World

pytestmark = pytest.mark.anyio


def _token_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return str(json.loads(block.text)["token"])


async def _connected(world: World) -> str:
    assert (await world.add_upstream()).status_code == 201
    assert (await world.connect(world.alice)).status_code == 200
    return await world.server_and_key(world.alice)


async def test_an_access_token_refused_upstream_is_refreshed_once_and_the_call_retried(world: World) -> None:
    key = await _connected(world)
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        first = _token_of(await client.call_tool("remote__whoami", {}))
        world.provider.expire_access_tokens()  # the provider stops honouring it before its stated expiry
        second = _token_of(await client.call_tool("remote__whoami", {}))
    assert first != second
    assert world.provider.refreshes == 1
    assert world.guard.refused >= 1  # the upstream really said 401 to the old token


async def test_a_token_near_its_expiry_is_refreshed_before_the_call(world: World) -> None:
    key = await _connected(world)
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        first = _token_of(await client.call_tool("remote__whoami", {}))
        # As if issued an hour ago with 10 s left (inside the 30 s margin); the provider still honours it.
        async with world.sessionmaker() as session:
            row = await session.scalar(select(OAuthToken))
            assert row is not None
            owner = Owner(template_id=row.template_id, org_id=row.org_id, user_id=row.user_id)
            await (await session.connection()).execute(
                update(OAuthToken).values(
                    expires_at=utcnow() + timedelta(seconds=10), updated_at=utcnow() - timedelta(hours=1)
                )
            )
            await session.commit()
        world.gateway.tokens.forget(owner)
        refused_before = world.guard.refused
        second = _token_of(await client.call_tool("remote__whoami", {}))
    assert first != second
    assert world.provider.refreshes == 1
    assert world.guard.refused == refused_before  # refreshed ahead: the upstream never saw a stale token


async def test_concurrent_calls_during_a_refresh_cause_exactly_one(world: World) -> None:
    key = await _connected(world)
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        await client.call_tool("remote__whoami", {})
        world.provider.expire_access_tokens()
        results = await asyncio.gather(*(client.call_tool("remote__whoami", {}) for _ in range(12)))
    tokens = {_token_of(r) for r in results}
    assert len(tokens) == 1
    assert world.provider.refreshes == 1


async def test_two_replicas_refreshing_the_same_token_refresh_once(world: World) -> None:
    """A second token manager over the same database and shared store stands for a second replica."""
    from patchbay.oauth.manager import TokenManager

    await _connected(world)
    gw = world.gateway
    other = TokenManager(sessionmaker=gw.sessionmaker, store=gw.store, secret=gw.secret, settings=gw.settings)
    async with world.sessionmaker() as session:
        row = await session.scalar(select(OAuthToken))
        assert row is not None
        owner = Owner(template_id=row.template_id, org_id=row.org_id, user_id=row.user_id)
    stale = await gw.tokens.access_token(owner)
    fresh = await asyncio.gather(*(m.refresh(owner, stale=stale) for m in (gw.tokens, other) for _ in range(5)))
    assert len(set(fresh)) == 1 and stale not in fresh
    assert world.provider.refreshes == 1


async def test_a_revoked_refresh_token_asks_the_user_to_reconnect(world: World) -> None:
    key = await _connected(world)
    world.provider.revoke_refresh_tokens()
    world.provider.expire_access_tokens()
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("remote__whoami", {})
    link = f"{world.url}/api/v1/orgs/{world.org}/connections/remote/start"
    assert caught.value.error.code == -32042
    assert "reconnect" in caught.value.error.message and link in caught.value.error.message
    async with world.api(world.alice) as http:
        listed = (await http.get(f"/api/v1/orgs/{world.org}/connections")).json()
    assert listed[0]["status"] == "expired"
    async with world.sessionmaker() as session:
        events = (await (await session.connection()).execute(text("SELECT event FROM audit_records"))).scalars().all()
    assert "oauth.refresh_failed" in events
    # Reconnecting makes the upstream usable again.
    assert (await world.connect(world.alice)).status_code == 200
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        assert not (await client.call_tool("remote__whoami", {})).is_error
