"""Login sessions live in the shared store: a cookie from one replica works on another, and logout ends it on both."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest

from patchbay.app import create_app
from patchbay.runtime import build_gateway
from patchbay.settings import Settings
from tests.state.support import require_redis

pytestmark = pytest.mark.anyio

PASSWORD = "violet hammer 42"


@pytest.fixture
async def two_replicas(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    shared = settings.model_copy(update={"redis_url": require_redis()})
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            gw = build_gateway(shared)
            await gw.start()
            stack.push_async_callback(gw.aclose)
            transport = httpx.ASGITransport(app=create_app(shared, gateway=gw))
            clients.append(
                await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="https://t"))
            )
        yield clients[0], clients[1]


async def test_a_login_on_one_replica_is_served_and_ended_on_another(
    two_replicas: tuple[httpx.AsyncClient, httpx.AsyncClient],
) -> None:
    first, second = two_replicas
    body = {"email": "ada@example.com", "password": PASSWORD}
    assert (await first.post("/api/v1/auth/register", json=body)).status_code == 201
    login = await first.post("/api/v1/auth/login", json=body)
    assert login.status_code == 200
    second.cookies = first.cookies
    assert (await second.get("/api/v1/me")).json()["email"] == "ada@example.com"
    csrf = {"x-csrf-token": login.json()["csrf_token"]}
    assert (await second.post("/api/v1/auth/logout", headers=csrf)).status_code == 204
    assert (await first.get("/api/v1/me")).status_code == 401
