"""Catalog over REST: global and org templates with metadata, write-only configuration, PENDING servers."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.routing.catalog import build_catalog
from patchbay.runtime import Gateway
from patchbay.services.upstreams import add_upstream
from patchbay.settings import Settings
from patchbay.store.models import Server, TemplateConfig
from tests.services.conftest import Discovered, tool
from tests.web.api.conftest import org_with, person

pytestmark = pytest.mark.anyio

CANARY = "canary-value-7f3a9c"


async def global_template(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    """A global catalog entry that needs an API_TOKEN each org must set."""
    async with sessionmaker() as session:
        await add_upstream(
            session,
            org_id=None,
            name="weather",
            transport="streamable_http",
            command=None,
            url="https://weather.invalid/mcp",
            env={},
            headers={},
            discovery=Discovered(tools=[tool("forecast", read_only=True)]),
            secret=settings.resolve_secret_key(),
            required=["Authorization"],
        )
        await session.commit()


async def test_server_is_pending_until_the_org_sets_every_required_value(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, gateway: Gateway
) -> None:
    await global_template(sessionmaker, settings)
    owner = await person(sessionmaker, settings, "owner@example.com")
    member = await person(sessionmaker, settings, "member@example.com")
    slug = await org_with(sessionmaker, "Acme", [(owner, "owner"), (member, "member")])
    base = f"/api/v1/orgs/{slug}"
    created = await client.post(f"{base}/servers", json={"name": "wx", "upstreams": ["weather"]}, headers=owner.headers)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "pending"
    config = await client.get(f"{base}/upstreams/weather/config", headers=member.headers)
    assert config.json() == {"required": ["Authorization"], "org": [], "mine": [], "missing": ["Authorization"]}

    refused = await client.put(
        f"{base}/upstreams/weather/config?level=org",
        json={"headers": {"Authorization": CANARY}},
        headers=member.headers,
    )
    assert refused.status_code == 403
    mine = await client.put(
        f"{base}/upstreams/weather/config?level=mine",
        json={"headers": {"Authorization": CANARY}},
        headers=member.headers,
    )
    assert mine.json()["mine"] == ["Authorization"] and mine.json()["missing"] == ["Authorization"]

    done = await client.put(
        f"{base}/upstreams/weather/config?level=org", json={"headers": {"Authorization": CANARY}}, headers=owner.headers
    )
    assert done.status_code == 200 and CANARY not in done.text
    assert done.json()["missing"] == []
    server = (await client.get(f"{base}/servers/wx", headers=owner.headers)).json()
    assert server["status"] == "running"
    async with sessionmaker() as session:
        running = await build_catalog(session, server_id=server["id"], secret=gateway.secret)
        assert list(running.tools) == ["weather__forecast"]

    # Removing the org's value sends the server back to pending.
    cleared = await client.delete(f"{base}/upstreams/weather/config?level=org", headers=owner.headers)
    assert cleared.status_code == 204
    assert (await client.get(f"{base}/servers/wx", headers=owner.headers)).json()["status"] == "pending"
    async with sessionmaker() as session:
        assert (await session.scalar(select(Server.status))) == "pending"
        pending = await build_catalog(session, server_id=server["id"], secret=gateway.secret)
        assert pending.tools == {}  # MCP clients of a pending server see no tools
        for row in (await session.scalars(select(TemplateConfig))).all():
            assert CANARY not in row.ciphertext

    # A shared credential with every required value runs the server too (keys bound to it call with it).
    shared = await client.put(
        f"{base}/credentials/weather/team", json={"headers": {"Authorization": CANARY}}, headers=owner.headers
    )
    assert shared.status_code in (200, 201), shared.text
    assert (await client.get(f"{base}/servers/wx", headers=owner.headers)).json()["status"] == "running"
    removed = await client.delete(f"{base}/credentials/weather/team", headers=owner.headers)
    assert removed.status_code == 204, removed.text
    assert (await client.get(f"{base}/servers/wx", headers=owner.headers)).json()["status"] == "pending"


async def test_catalog_metadata_and_visibility(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await global_template(sessionmaker, settings)
    root = await person(sessionmaker, settings, "root@example.com", admin=True)
    admin = await person(sessionmaker, settings, "admin@example.com")
    member = await person(sessionmaker, settings, "member@example.com")
    slug = await org_with(sessionmaker, "Acme", [(admin, "owner"), (member, "member"), (root, "admin")])
    base = f"/api/v1/orgs/{slug}/upstreams"
    patch = {"description": "Forecasts", "tags": ["Weather", "public-data"], "icon": "https://x.invalid/i.png"}
    assert (await client.patch(f"{base}/weather", json=patch, headers=admin.headers)).status_code == 403
    changed = await client.patch(f"{base}/weather", json=patch, headers=root.headers)
    assert changed.status_code == 200, changed.text
    assert changed.json()["tags"] == ["weather", "public-data"] and changed.json()["scope"] == "global"
    bad = await client.patch(f"{base}/weather", json={"icon": "javascript:alert(1)"}, headers=root.headers)
    assert bad.status_code == 422

    await client.patch(f"{base}/weather", json={"visibility": "private"}, headers=root.headers)
    member_view = (await client.get(base, headers=member.headers)).json()["items"]
    admin_view = (await client.get(base, headers=admin.headers)).json()["items"]
    assert member_view == [] and [u["slug"] for u in admin_view] == ["weather"]


async def test_global_catalog_is_listed_for_everyone_and_curated_by_platform_admins(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await global_template(sessionmaker, settings)
    root = await person(sessionmaker, settings, "root@example.com", admin=True)
    someone = await person(sessionmaker, settings, "someone@example.com")
    listed = (await client.get("/api/v1/catalog", headers=someone.headers)).json()["items"]
    assert [e["slug"] for e in listed] == ["weather"] and listed[0]["secret_keys"] == ["Authorization"]
    refused = await client.patch("/api/v1/catalog/weather", json={"visibility": "private"}, headers=someone.headers)
    assert refused.status_code == 403
    hidden = await client.patch("/api/v1/catalog/weather", json={"visibility": "private"}, headers=root.headers)
    assert hidden.status_code == 200
    assert (await client.get("/api/v1/catalog", headers=someone.headers)).json()["items"] == []
    assert len((await client.get("/api/v1/catalog", headers=root.headers)).json()["items"]) == 1
    assert (await client.delete("/api/v1/catalog/weather", headers=someone.headers)).status_code == 403
    assert (await client.delete("/api/v1/catalog/weather", headers=root.headers)).status_code == 204
