"""A member's own template values override the org's on their MCP calls, and only on theirs."""

from __future__ import annotations

import json

import httpx
import pytest
from mcp import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.fixtures.servers import running_fixture
from tests.harness import running_gateway
from tests.web.api.conftest import Person, org_with, person

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

HEADER = "X-Team-Token"


async def whoami(url: str, key: str) -> str | None:
    async with Client(f"{url}/mcp/k/{key}") as client:
        result = await client.call_tool("fixture__whoami", {})
        text = result.content[0].text  # type: ignore[union-attr]
        headers: dict[str, str] = json.loads(text)["headers"]
        return headers.get(HEADER.lower())


async def test_user_value_beats_org_value_for_that_user_only(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await person(sessionmaker, settings, "alice@example.com")
    bob = await person(sessionmaker, settings, "bob@example.com")
    slug = await org_with(sessionmaker, "Acme", [(alice, "owner"), (bob, "member")])
    async with running_fixture("streamable-http") as upstream, running_gateway(settings) as gateway:
        base = f"{gateway}/api/v1/orgs/{slug}"
        async with httpx.AsyncClient(timeout=30) as api:

            async def call(who: Person, method: str, path: str, body: object = None) -> httpx.Response:
                response = await api.request(method, base + path, json=body, headers=who.headers)
                assert response.status_code < 300, response.text
                return response

            await call(alice, "POST", "/upstreams", {"name": "fixture", "url": upstream, "required_keys": [HEADER]})
            await call(alice, "POST", "/servers", {"name": "main", "upstreams": ["fixture"]})
            await call(alice, "PUT", "/upstreams/fixture/config?level=org", {"headers": {HEADER: "org-value"}})
            await call(bob, "PUT", "/upstreams/fixture/config?level=mine", {"headers": {HEADER: "bob-value"}})
            keys = {
                who.email: (await call(who, "POST", "/keys", {"server": "main"})).json()["key"] for who in (alice, bob)
            }
        assert await whoami(gateway, keys["alice@example.com"]) == "org-value"
        assert await whoami(gateway, keys["bob@example.com"]) == "bob-value"
