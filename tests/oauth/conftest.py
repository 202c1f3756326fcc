"""A real authorization server, a protected upstream MCP server and a gateway, all on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp

from patchbay.runtime import Gateway
from patchbay.services.keys import create_key
from patchbay.services.orgs import get_org
from patchbay.services.servers import create_server, get_server
from patchbay.settings import Settings
from patchbay.store.models import User
from tests.harness import free_port, serving_gateway
from tests.oauth.provider import Provider
from tests.oauth.resource import Guard, protected_app
from tests.web.api.conftest import Person, org_with, person


@asynccontextmanager
async def serve(app: ASGIApp, port: int) -> AsyncIterator[None]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


@dataclass
class World:
    url: str  # the gateway
    gateway: Gateway
    provider: Provider
    guard: Guard
    admin: Person
    alice: Person
    bob: Person
    org: str
    sessionmaker: async_sessionmaker[AsyncSession]
    settings: Settings

    @property
    def upstream_url(self) -> str:
        return self.guard.resource

    def api(self, who: Person) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=who.headers, timeout=30)

    async def add_upstream(self, **extra: object) -> httpx.Response:
        async with self.api(self.admin) as http:
            return await http.post(
                f"/api/v1/orgs/{self.org}/upstreams", json={"name": "remote", "url": self.upstream_url, **extra}
            )

    async def connect(self, who: Person, *, credential: str = "own") -> httpx.Response:
        """Start, follow the provider's auto-consent redirect, and land on the callback as ``who``."""
        async with self.api(who) as http:
            started = await http.post(
                f"/api/v1/orgs/{self.org}/connections/remote/start", params={"credential": credential}
            )
            assert started.status_code == 200, started.text
            consent = await http.get(started.json()["authorization_url"])
            assert consent.status_code == 302, consent.text
            return await http.get(consent.headers["location"])

    async def server_and_key(
        self, who: Person, *, server: str = "main", credentials: Sequence[tuple[str, str]] = ()
    ) -> str:
        async with self.sessionmaker() as session:
            org = await get_org(session, slug=self.org)
            try:
                srv = await get_server(session, org_id=org.id, name_or_slug=server)
            except Exception:
                srv = await create_server(
                    session,
                    org_id=org.id,
                    name=server,
                    upstream_slugs=["remote"],
                    tools=None,
                    plain_names=False,
                    new_tools="enabled",
                )
            user = await session.get(User, who.id)
            assert user is not None
            _row, secret = await create_key(
                session,
                server=srv,
                user=user,
                name="t",
                allow=None,
                expires_in=None,
                secret=self.gateway.secret,
                credentials=credentials,
            )
            await session.commit()
            return secret


@pytest.fixture
async def world(settings: Settings) -> AsyncIterator[World]:
    provider = Provider()
    guard = Guard()
    as_port, rs_port = free_port(), free_port()
    provider.issuer = f"http://127.0.0.1:{as_port}"
    guard.resource = f"http://127.0.0.1:{rs_port}/mcp"
    guard.introspection = f"{provider.issuer}/introspect"
    settings.upstream_timeout = 10.0
    async with (
        serve(provider.app(), as_port),
        serve(protected_app(guard), rs_port),
        serving_gateway(settings) as (url, gateway),
    ):
        sm = gateway.sessionmaker
        admin = await person(sm, settings, "admin@example.com", admin=True)
        alice = await person(sm, settings, "alice@example.com")
        bob = await person(sm, settings, "bob@example.com")
        org = await org_with(sm, "Acme", [(admin, "owner"), (alice, "member"), (bob, "member")])
        yield World(url, gateway, provider, guard, admin, alice, bob, org, sm, gateway.settings)
