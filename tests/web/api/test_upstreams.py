"""Upstreams over REST against a real fixture MCP server: add, import, remove; stdio only for platform admins."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.fixtures.servers import running_fixture, stdio_command
from tests.web.api.conftest import org_with, person

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_org_admin_adds_an_http_upstream_and_builds_a_server_on_it(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner = await person(sessionmaker, settings, "owner@example.com")
    slug = await org_with(sessionmaker, "Acme", [(owner, "owner")])
    base = f"/api/v1/orgs/{slug}"
    async with running_fixture("streamable-http") as url:
        added = await client.post(
            f"{base}/upstreams",
            json={"name": "Fixture", "url": url, "tags": ["test"], "description": "the fixture"},
            headers=owner.headers,
        )
        assert added.status_code == 201, added.text
        body = added.json()
        assert body["slug"] == "fixture" and body["scope"] == "org" and body["active_tools"] > 0
        assert body["tags"] == ["test"] and body["description"] == "the fixture"
        server = await client.post(
            f"{base}/servers", json={"name": "main", "upstreams": ["fixture"]}, headers=owner.headers
        )
        assert server.status_code == 201 and server.json()["status"] == "running"
        again = await client.post(f"{base}/upstreams", json={"name": "fixture", "url": url}, headers=owner.headers)
        assert again.status_code == 409
    in_use = await client.delete(f"{base}/upstreams/fixture", headers=owner.headers)
    assert in_use.status_code == 409
    assert (await client.delete(f"{base}/upstreams/fixture?force=true", headers=owner.headers)).status_code == 204


async def test_unreachable_upstream_is_a_clear_error_and_nothing_is_stored(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner = await person(sessionmaker, settings, "owner@example.com")
    slug = await org_with(sessionmaker, "Acme", [(owner, "owner")])
    failed = await client.post(
        f"/api/v1/orgs/{slug}/upstreams", json={"name": "gone", "url": "http://127.0.0.1:9/mcp"}, headers=owner.headers
    )
    assert failed.status_code in (502, 504) and failed.json()["error"]["code"].startswith("upstream")
    assert (await client.get(f"/api/v1/orgs/{slug}/upstreams", headers=owner.headers)).json()["items"] == []


async def test_import_reports_each_entry_and_refuses_stdio_for_org_admins(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner = await person(sessionmaker, settings, "owner@example.com")
    slug = await org_with(sessionmaker, "Acme", [(owner, "owner")])
    async with running_fixture("streamable-http") as url:
        document = {
            "mcpServers": {
                "remote": {"type": "http", "url": url},
                "local": {"command": stdio_command()[0], "args": stdio_command()[1:]},
            }
        }
        result = await client.post(f"/api/v1/orgs/{slug}/upstreams/import", json=document, headers=owner.headers)
    assert result.status_code == 200, result.text
    outcomes = {o["name"]: o for o in result.json()}
    assert outcomes["remote"]["ok"] and outcomes["remote"]["upstream"]["slug"] == "remote"
    assert not outcomes["local"]["ok"] and "platform administrator" in outcomes["local"]["error"]
