"""Per key, the credential an upstream call carries: own, org or a named shared credential.

Real gateway, real fixture upstreams (HTTP and stdio); the upstream's ``whoami`` tool answers the
headers it received, its FIXTURE_TOKEN env value and its process id.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from patchbay.store.models import AuditRecord, SharedCredential
from tests.fixtures.servers import running_fixture, stdio_command
from tests.harness import running_gateway
from tests.web.api.conftest import Person, org_with, person

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

Api = Callable[..., Awaitable[httpx.Response]]


async def whoami(url: str, key: str, *, header: str = "authorization") -> dict[str, Any]:
    """Call the fixture's whoami through the gateway with ``key`` sent in ``header``."""
    value = f"Bearer {key}" if header == "authorization" else key
    async with (
        httpx.AsyncClient(headers={header: value}, timeout=httpx.Timeout(30, read=60)) as http,
        Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
    ):
        result = await client.call_tool("fixture__whoami", {})
    seen: dict[str, Any] = json.loads(result.content[0].text)  # type: ignore[union-attr]
    return seen


def bearer(seen: dict[str, Any]) -> str | None:
    headers: dict[str, str] = seen["headers"] or {}
    return headers.get("authorization")


@asynccontextmanager
async def api_for(url: str, slug: str) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(timeout=30) as http:

        async def call(who: Person, method: str, path: str, body: object = None, *, status: int = 0) -> httpx.Response:
            response = await http.request(method, f"{url}/api/v1/orgs/{slug}{path}", json=body, headers=who.headers)
            if status:
                assert response.status_code == status, response.text
            else:
                assert response.status_code < 300, response.text
            return response

        yield call


async def credentials_of(sessionmaker: async_sessionmaker[AsyncSession], key_prefix: str) -> list[str | None]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditRecord.credential)
            .where(AuditRecord.key_prefix == key_prefix, AuditRecord.tool_name == "fixture__whoami")
            .order_by(AuditRecord.created_at)
        )
        return list(rows)


async def test_two_keys_of_one_user_reach_an_http_upstream_with_different_tokens(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await person(sessionmaker, settings, "alice@example.com")
    slug = await org_with(sessionmaker, "Acme", [(alice, "owner")])
    async with running_fixture("streamable-http") as upstream, running_gateway(settings) as gateway:
        async with api_for(gateway, slug) as api:
            await api(alice, "POST", "/upstreams", {"name": "fixture", "url": upstream})
            await api(alice, "POST", "/servers", {"name": "main", "upstreams": ["fixture"]})
            await api(alice, "PUT", "/upstreams/fixture/config?level=org", {"headers": {"X-Team": "acme"}})
            mine = {"headers": {"Authorization": "Bearer own"}}
            await api(alice, "PUT", "/upstreams/fixture/config?level=mine", mine)
            await api(alice, "PUT", "/credentials/fixture/bot-a", {"bearer": "token-a"})
            await api(alice, "PUT", "/credentials/fixture/bot-b", {"headers": {"Authorization": "Bearer token-b"}})
            keys: dict[str, dict[str, Any]] = {}
            for choice in ("shared:bot-a", "shared:bot-b", "own", "org"):
                body = {"server": "main", "name": choice, "credentials": {"fixture": choice}}
                keys[choice] = (await api(alice, "POST", "/keys", body)).json()
            default = (await api(alice, "POST", "/keys", {"server": "main"})).json()
            assert keys["shared:bot-a"]["credentials"] == {"fixture": "shared:bot-a"}
            assert default["credentials"] == {} and default["shared"] is False

        seen = {choice: await whoami(gateway, key["key"]) for choice, key in keys.items()}
        assert bearer(seen["shared:bot-a"]) == "Bearer token-a"
        assert bearer(seen["shared:bot-b"]) == "Bearer token-b"
        assert bearer(seen["own"]) == "Bearer own"
        assert bearer(seen["org"]) is None
        # Named credentials and the user's own values sit on top of the org's.
        assert all(s["headers"]["x-team"] == "acme" for s in seen.values())
        # The default is what it was before keys could choose: the user's values over the org's.
        assert bearer(await whoami(gateway, default["key"])) == "Bearer own"
        # The client's own key never reaches the upstream, whichever header carried it.
        for key in (*keys.values(), default):
            for header in ("authorization", "x-api-key"):
                received = json.dumps((await whoami(gateway, key["key"], header=header))["headers"])
                assert key["key"] not in received
                assert key["key"][:12] not in received
    for choice, key in keys.items():
        expected = "org" if choice == "org" else choice
        assert set(await credentials_of(sessionmaker, key["prefix"])) == {expected}


async def test_a_shared_key_reaches_the_upstream_with_one_token_whoever_holds_it(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await person(sessionmaker, settings, "alice@example.com")
    bob = await person(sessionmaker, settings, "bob@example.com")
    carol = await person(sessionmaker, settings, "carol@example.com")
    slug = await org_with(sessionmaker, "Acme", [(alice, "owner"), (bob, "member"), (carol, "member")])
    async with running_fixture("streamable-http") as upstream, running_gateway(settings) as gateway:
        async with api_for(gateway, slug) as api:
            await api(alice, "POST", "/upstreams", {"name": "fixture", "url": upstream})
            await api(alice, "POST", "/servers", {"name": "main", "upstreams": ["fixture"]})
            for who in (bob, carol):
                mine = {"headers": {"Authorization": f"Bearer {who.email}"}}
                await api(who, "PUT", "/upstreams/fixture/config?level=mine", mine)
            await api(alice, "PUT", "/credentials/fixture/team", {"bearer": "team-token"})
            # Members see names, never values, and may not hand out the org's credentials.
            listed = (await api(bob, "GET", "/credentials")).json()["items"]
            assert listed == [
                {
                    "upstream": "fixture",
                    "name": "team",
                    "env": {},
                    "headers": {"Authorization": "set"},
                    "keys": 0,
                    "created_at": listed[0]["created_at"],
                    "updated_at": listed[0]["updated_at"],
                }
            ]
            await api(bob, "PUT", "/credentials/fixture/mine", {"bearer": "x"}, status=403)
            body = {"server": "main", "shared": True, "credentials": {"fixture": "shared:team"}}
            await api(bob, "POST", "/keys", body, status=403)
            await api(bob, "POST", "/keys", {"server": "main", "credentials": {"fixture": "shared:team"}}, status=403)
            # A shared key calls with shared credentials only.
            own = {"server": "main", "shared": True, "credentials": {"fixture": "own"}}
            assert (await api(alice, "POST", "/keys", own, status=422)).json()["error"]["code"] == "invalid_input"
            shared = (await api(alice, "POST", "/keys", body)).json()
            assert shared["shared"] is True and shared["credentials"] == {"fixture": "shared:team"}
            personal = {who.email: (await api(who, "POST", "/keys", {"server": "main"})).json() for who in (bob, carol)}

        # Bob and Carol each hold the shared key: the upstream sees one token for both.
        by_holder = [await whoami(gateway, shared["key"]) for _holder in (bob, carol)]
        assert [bearer(s) for s in by_holder] == ["Bearer team-token", "Bearer team-token"]
        # Their personal keys carry their own tokens.
        assert bearer(await whoami(gateway, personal[bob.email]["key"])) == f"Bearer {bob.email}"
        assert bearer(await whoami(gateway, personal[carol.email]["key"])) == f"Bearer {carol.email}"

        async with api_for(gateway, slug) as api:
            # Bob switches his own key to the org's configuration: the next call uses it.
            prefix = personal[bob.email]["prefix"]
            changed = await api(bob, "PUT", f"/keys/{prefix}/credentials", {"credentials": {"fixture": "org"}})
            assert changed.json()["credentials"] == {"fixture": "org"}
            assert bearer(await whoami(gateway, personal[bob.email]["key"])) is None
            # A credential in use cannot be removed; once its key is revoked it can.
            await api(alice, "DELETE", "/credentials/fixture/team", status=409)
            await api(alice, "DELETE", f"/keys/{shared['prefix']}", status=204)
            await api(alice, "DELETE", "/credentials/fixture/team", status=204)
    assert set(await credentials_of(sessionmaker, shared["prefix"])) == {"shared:team"}


async def test_a_named_credential_of_another_org_cannot_be_bound(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await person(sessionmaker, settings, "alice@example.com")
    mallory = await person(sessionmaker, settings, "mallory@example.com")
    acme = await org_with(sessionmaker, "Acme", [(alice, "owner")])
    evil = await org_with(sessionmaker, "Evil", [(mallory, "owner")])
    async with running_fixture("streamable-http") as upstream, running_gateway(settings) as gateway:
        async with api_for(gateway, acme) as api:
            await api(alice, "POST", "/upstreams", {"name": "fixture", "url": upstream})
            await api(alice, "PUT", "/credentials/fixture/team", {"bearer": "acme-secret"})
            # Outside the org, its credentials do not exist.
            await api(mallory, "GET", "/credentials", status=404)
            await api(mallory, "PUT", "/credentials/fixture/team", {"bearer": "x"}, status=404)
        async with api_for(gateway, evil) as api:
            await api(mallory, "POST", "/upstreams", {"name": "fixture", "url": upstream})
            await api(mallory, "POST", "/servers", {"name": "main", "upstreams": ["fixture"]})
            body = {"server": "main", "credentials": {"fixture": "shared:team"}}
            refused = await api(mallory, "POST", "/keys", body, status=404)
            assert "team" in refused.json()["error"]["message"]
            assert (await api(mallory, "GET", "/credentials")).json()["items"] == []
    async with sessionmaker() as session:
        assert len((await session.scalars(select(SharedCredential))).all()) == 1


async def test_stdio_upstreams_run_one_process_per_credential_set(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    # Only a platform administrator may add an upstream that runs a local command.
    alice = await person(sessionmaker, settings, "alice@example.com", admin=True)
    bob = await person(sessionmaker, settings, "bob@example.com")
    slug = await org_with(sessionmaker, "Acme", [(alice, "owner"), (bob, "member")])
    async with running_gateway(settings) as gateway:
        async with api_for(gateway, slug) as api:
            added = {"name": "fixture", "command": stdio_command(), "env": {"FIXTURE_TOKEN": "org-secret"}}
            await api(alice, "POST", "/upstreams", added)
            await api(alice, "POST", "/servers", {"name": "main", "upstreams": ["fixture"]})
            for who in (alice, bob):
                mine = {"env": {"FIXTURE_TOKEN": f"{who.email}-secret"}}
                await api(who, "PUT", "/upstreams/fixture/config?level=mine", mine)
            await api(alice, "PUT", "/credentials/fixture/team", {"env": {"FIXTURE_TOKEN": "team-secret"}})
            refused = await api(alice, "PUT", "/credentials/fixture/web", {"bearer": "x"}, status=422)
            assert "env vars" in refused.json()["error"]["message"]
            team = {"server": "main", "credentials": {"fixture": "shared:team"}}
            keys = {
                "alice-1": await api(alice, "POST", "/keys", {"server": "main"}),
                "alice-2": await api(alice, "POST", "/keys", {"server": "main"}),
                "bob": await api(bob, "POST", "/keys", {"server": "main"}),
                "alice-team": await api(alice, "POST", "/keys", team),
                "bob-team": await api(alice, "POST", "/keys", {**team, "user": bob.email}),
                "bob-org": await api(bob, "POST", "/keys", {"server": "main", "credentials": {"fixture": "org"}}),
            }
        seen = {name: await whoami(gateway, response.json()["key"]) for name, response in keys.items()}
    tokens = {name: s["fixture_token"] for name, s in seen.items()}
    assert tokens == {
        "alice-1": "alice@example.com-secret",
        "alice-2": "alice@example.com-secret",
        "bob": "bob@example.com-secret",
        "alice-team": "team-secret",
        "bob-team": "team-secret",
        "bob-org": "org-secret",
    }
    pids = {name: s["pid"] for name, s in seen.items()}
    # Same credential set, same process; another credential set, another process.
    assert pids["alice-1"] == pids["alice-2"]
    assert pids["alice-team"] == pids["bob-team"]
    assert len({pids["alice-1"], pids["bob"], pids["alice-team"], pids["bob-org"]}) == 4
