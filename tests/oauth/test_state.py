"""The callback honours a flow's state once, before it expires, and only for the user who started it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from tests.oauth.conftest import World

pytestmark = pytest.mark.anyio


async def _callback_url(world: World) -> str:
    """Start as alice and follow the provider's consent: the callback URL carrying code and state."""
    assert (await world.add_upstream()).status_code == 201
    async with world.api(world.alice) as http:
        started = await http.post(f"/api/v1/orgs/{world.org}/connections/remote/start")
        consent = await http.get(started.json()["authorization_url"])
    return str(consent.headers["location"])


async def test_a_replayed_state_is_rejected(world: World) -> None:
    callback = await _callback_url(world)
    async with world.api(world.alice) as http:
        assert (await http.get(callback)).status_code == 200
        again = await http.get(callback)
    assert again.status_code == 403
    assert "already completed" in again.json()["error"]["message"]


async def test_a_state_started_by_another_user_is_rejected(world: World) -> None:
    callback = await _callback_url(world)
    async with world.api(world.bob) as http:
        stolen = await http.get(callback)
    assert stolen.status_code == 403
    assert "another user" in stolen.json()["error"]["message"]
    await world.gateway.audit.flush()
    async with world.sessionmaker() as session:
        rows = (
            await (await session.connection()).execute(
                text("SELECT user_id, status FROM audit_records WHERE event = 'oauth.callback_rejected'")
            )
        ).all()
    assert [tuple(r) for r in rows] == [(world.bob.id, "denied")]
    async with world.api(world.alice) as http:  # not burnt by bob's attempt
        assert (await http.get(callback)).status_code == 200


async def test_an_unauthenticated_callback_is_rejected(world: World) -> None:
    callback = await _callback_url(world)
    async with world.api(world.alice) as http:
        anonymous = await http.get(callback, headers={"authorization": ""})
    assert anonymous.status_code == 401


async def test_a_state_the_gateway_never_issued_is_rejected(world: World) -> None:
    callback = await _callback_url(world)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    async with world.api(world.alice) as http:
        forged = await http.get("/api/v1/oauth/callback", params={"code": code, "state": "made-up"})
    assert forged.status_code == 403
    assert "unknown or expired" in forged.json()["error"]["message"]


async def test_an_expired_state_is_rejected(world: World) -> None:
    world.gateway.settings.oauth_state_ttl_seconds = 0.05
    callback = await _callback_url(world)
    import asyncio

    await asyncio.sleep(0.1)  # past the flow's lifetime: expiry is what is under test
    async with world.api(world.alice) as http:
        late = await http.get(callback)
    assert late.status_code == 403
    assert "expired" in late.json()["error"]["message"]


async def test_redirect_after_must_stay_on_the_gateway(world: World) -> None:
    assert (await world.add_upstream()).status_code == 201
    async with world.api(world.alice) as http:
        evil = await http.post(
            f"/api/v1/orgs/{world.org}/connections/remote/start", params={"redirect_after": "https://evil.example/"}
        )
        fine = await http.post(f"/api/v1/orgs/{world.org}/connections/remote/start", params={"redirect_after": "/ok"})
        consent = await http.get(fine.json()["authorization_url"])
        landed = await http.get(consent.headers["location"])
    assert evil.status_code == 422
    assert landed.status_code == 302 and landed.headers["location"] == "/ok"
