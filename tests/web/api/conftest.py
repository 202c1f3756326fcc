"""An in-process REST client over a real gateway (its database, shared store and secret)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.app import create_app
from patchbay.runtime import Gateway, build_gateway
from patchbay.services.orgs import add_member, create_org
from patchbay.services.servers import create_server
from patchbay.services.tokens import create_token
from patchbay.services.upstreams import add_upstream
from patchbay.services.users import create_user
from patchbay.settings import Settings
from patchbay.store.models import User
from tests.services.conftest import Discovered, tool

BASE = "https://testserver"


@dataclass(frozen=True)
class Person:
    """A user with a personal access token, ready to call the API."""

    id: str
    email: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gw = build_gateway(settings)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.aclose()


@pytest.fixture
async def client(settings: Settings, gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, gateway=gateway)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        yield http


async def person(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, email: str, *, admin: bool = False
) -> Person:
    """A new user (no password) and a fresh personal access token for them."""
    async with sessionmaker() as session:
        user = await create_user(session, email=email, password=None, admin=admin, join_default=False)
        _row, secret = await create_token(
            session, user=user, name="tests", expires_in=None, secret=settings.resolve_secret_key()
        )
        await session.commit()
        return Person(id=user.id, email=user.email, token=secret)


async def org_with(
    sessionmaker: async_sessionmaker[AsyncSession], name: str, members: Sequence[tuple[Person, str]]
) -> str:
    """A shared org whose first member (owner) creates it; returns its slug."""
    async with sessionmaker() as session:
        first, _role = members[0]
        org = await create_org(session, name=name, owner_id=first.id)
        for who, role in members[1:]:
            await add_member(session, org=org, user_id=who.id, role=role)
        await session.commit()
        return org.slug


async def stock_org(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, org_slug: str, *, server: str = "main"
) -> None:
    """An org-private upstream ``clock`` (two tools, one read-only) and a server over it."""
    from patchbay.services.orgs import get_org

    async with sessionmaker() as session:
        org = await get_org(session, slug=org_slug)
        await add_upstream(
            session,
            org_id=org.id,
            name="clock",
            transport="streamable_http",
            command=None,
            url="https://clock.invalid/mcp",
            env={},
            headers={},
            discovery=Discovered(tools=[tool("now", read_only=True), tool("set_alarm")]),
            secret=settings.resolve_secret_key(),
        )
        await create_server(
            session, org_id=org.id, name=server, upstream_slugs=["clock"], tools=None, plain_names=False
        )
        await session.commit()


async def user_row(sessionmaker: async_sessionmaker[AsyncSession], user_id: str) -> User:
    async with sessionmaker() as session:
        found = await session.get(User, user_id)
        assert found is not None
        return found


async def add_org_upstream(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, org_slug: str, name: str
) -> None:
    """Another org-private upstream with one tool, used by no server."""
    from patchbay.services.orgs import get_org

    async with sessionmaker() as session:
        org = await get_org(session, slug=org_slug)
        await add_upstream(
            session,
            org_id=org.id,
            name=name,
            transport="streamable_http",
            command=None,
            url="https://spare.invalid/mcp",
            env={},
            headers={},
            discovery=Discovered(tools=[tool("ping", read_only=True)]),
            secret=settings.resolve_secret_key(),
        )
        await session.commit()
