"""Planted canary secrets never show up in the database in plaintext, in a log line, or in an API response
(beyond the one response that hands a new key or token to its owner)."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.fixtures.servers import stdio_command
from tests.harness import modern_tool_call
from tests.web.api.conftest import person

pytestmark = pytest.mark.anyio

PASSWORD = "canary-password-51f0e2"
ENV_VALUE = "canary-env-9d41b7"
HEADER_VALUE = "canary-header-2c88aa"
SHARED_VALUE = "canary-shared-credential-7e13f0"


async def dump_database(sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    """Every value of every row of every table, as one string."""
    async with sessionmaker() as session:
        conn = await session.connection()
        tables = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
        parts = []
        for table in tables:
            rows = (await session.execute(text(f'SELECT * FROM "{table}"'))).all()
            parts += [repr(tuple(row)) for row in rows]
        return "\n".join(parts)


async def test_no_canary_leaks_anywhere(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    responses: list[tuple[str, str]] = []

    async def remember(response: httpx.Response) -> None:
        await response.aread()
        responses.append((f"{response.request.method} {response.request.url.path}", response.text))

    client.event_hooks["response"] = [remember]
    root = await person(sessionmaker, settings, "root@example.com", admin=True)

    assert (
        await client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD})
    ).status_code == 201
    login = await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    csrf = {"x-csrf-token": login.json()["csrf_token"]}
    org = (await client.get("/api/v1/orgs")).json()["items"][0]["slug"]
    await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD + "x"})
    await client.post(
        "/api/v1/auth/password", json={"current_password": PASSWORD + "?", "new_password": PASSWORD + "!"}, headers=csrf
    )

    # The platform administrator adds a stdio upstream to the global catalog, with a secret env value.
    root_org = (await client.get("/api/v1/orgs", headers=root.headers)).json()["items"][0]["slug"]
    added = await client.post(
        f"/api/v1/orgs/{root_org}/upstreams",
        json={"name": "fixture", "command": stdio_command(), "env": {"FIXTURE_TOKEN": ENV_VALUE}, "scope": "global"},
        headers=root.headers,
    )
    assert added.status_code == 201, added.text
    configured = await client.put(
        f"/api/v1/orgs/{org}/upstreams/fixture/config?level=org",
        json={"headers": {}, "env": {"EXTRA_TOKEN": HEADER_VALUE}},
        headers=csrf,
    )
    assert configured.status_code == 200, configured.text
    server = await client.post(
        f"/api/v1/orgs/{org}/servers", json={"name": "main", "upstreams": ["fixture"]}, headers=csrf
    )
    assert server.status_code == 201, server.text
    key = await client.post(f"/api/v1/orgs/{org}/keys", json={"server": "main"}, headers=csrf)
    # A named shared credential, bound to a key: its value goes in and never comes out.
    shared = await client.put(
        f"/api/v1/orgs/{org}/credentials/fixture/team", json={"env": {"FIXTURE_TOKEN": SHARED_VALUE}}, headers=csrf
    )
    assert shared.status_code == 200, shared.text
    bound = await client.post(
        f"/api/v1/orgs/{org}/keys",
        json={"server": "main", "credentials": {"fixture": "shared:team"}, "name": "team"},
        headers=csrf,
    )
    assert bound.status_code == 201, bound.text
    assert (await client.get(f"/api/v1/orgs/{org}/credentials")).status_code == 200
    token = await client.post("/api/v1/me/tokens", json={"name": "ci"}, headers=csrf)
    key_secret, token_secret = key.json()["key"], token.json()["token"]
    # A call with the key, then its audit record and stored payload read back over REST.
    call = modern_tool_call(key_secret, "fixture__echo", {"text": "hello"})
    call["headers"]["Host"] = "127.0.0.1"  # type: ignore[index]  # /mcp admits local hosts only by default
    called = await client.post("/mcp", **call)  # type: ignore[arg-type]
    assert called.status_code == 200, called.text
    async with asyncio.timeout(10):
        while True:
            listed = (await client.get(f"/api/v1/orgs/{org}/logs", params={"tool": "fixture__echo"})).json()["items"]
            if listed and listed[0]["payload_stored"]:
                break
            await asyncio.sleep(0.02)
    assert (await client.get(f"/api/v1/orgs/{org}/logs/{listed[0]['id']}")).status_code == 200
    payload = await client.get(f"/api/v1/orgs/{org}/logs/{listed[0]['id']}/payload")
    assert payload.status_code == 200 and payload.json()["tool"] == "fixture__echo"
    for path in ("/api/v1/me", "/api/v1/me/tokens", f"/api/v1/orgs/{org}/keys", f"/api/v1/orgs/{org}/upstreams"):
        assert (await client.get(path)).status_code == 200
    await client.get(f"/api/v1/orgs/{org}/upstreams/fixture/config")
    assert (await client.delete(f"/api/v1/orgs/{org}/keys/{key.json()['prefix']}", headers=csrf)).status_code == 204
    # A whole key never belongs in a URL (proxies and clients log paths): refused, and not echoed back.
    assert (await client.delete(f"/api/v1/orgs/{org}/keys/{key_secret}", headers=csrf)).status_code == 422

    database = await dump_database(sessionmaker)
    # The test's own HTTP client (logger "httpx") logs the URLs this test chose; the gateway's lines are the subject.
    logs = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if not r.name.startswith("httpx"))
    for canary in (PASSWORD, ENV_VALUE, HEADER_VALUE, SHARED_VALUE, key_secret, token_secret):
        assert canary not in database, "a secret is stored in plaintext"
        assert canary not in logs, "a secret reached a log line"
        handed_out = {
            key_secret: f"POST /api/v1/orgs/{org}/keys",
            token_secret: "POST /api/v1/me/tokens",
        }.get(canary)
        leaked = [where for where, body in responses if canary in body and where != handed_out]
        assert leaked == [], f"a secret came back in {leaked}"
    assert len(responses) >= 15
