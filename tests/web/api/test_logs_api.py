"""``/api/v1/orgs/{org}/logs``: real MCP calls through a running gateway, read back over REST.

Admins read the org's records, members only their own; filters, newest-first cursor pages,
one record, its (redacted) payload, and the live SSE stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.services.orgs import add_member, create_org, ensure_default_org
from patchbay.services.tokens import create_token
from patchbay.services.users import create_user, get_user
from patchbay.settings import Settings
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, make_key, make_server, modern_tool_call, serving_gateway

pytestmark = pytest.mark.anyio

CANARY = "sk-live-CANARYlogsapi0123456789abcdef"


async def _token(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, email: str, role: str) -> str:
    """A personal access token for ``email``, made a ``role`` of the default org."""
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        try:
            user = await get_user(session, email=email)
        except Exception:
            user = await create_user(session, email=email, password=None, admin=False, join_default=False)
        await add_member(session, org=org, user_id=user.id, role=role)
        _row, secret = await create_token(
            session, user=user, name="t", expires_in=None, secret=settings.resolve_secret_key()
        )
        await session.commit()
        return secret


async def _stranger(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> str:
    async with sessionmaker() as session:
        user = await create_user(session, email="eve@example.com", password=None, admin=False, join_default=False)
        await create_org(session, name="Elsewhere", owner_id=user.id)
        _row, secret = await create_token(
            session, user=user, name="t", expires_in=None, secret=settings.resolve_secret_key()
        )
        await session.commit()
        return secret


def _auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _all(http: httpx.AsyncClient, token: str, **params: Any) -> list[dict[str, Any]]:
    """Every record matching ``params``, following cursors (pages of 2)."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 2, **params, **({"cursor": cursor} if cursor else {})}
        response = await http.get("/api/v1/orgs/default/logs", params=query, headers=_auth(token))
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


async def _calls(http: httpx.AsyncClient, token: str, **params: Any) -> list[dict[str, Any]]:
    return [r for r in await _all(http, token, **params) if r["method"] == "tools/call"]


@pytest.fixture
async def world(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    keys = {
        "alice": await make_key(sessionmaker, settings, server="main", email="alice@example.com"),
        "bob": await make_key(
            sessionmaker, settings, server="main", email="bob@example.com", allow=[("fx__echo", "r")]
        ),
    }
    tokens = {
        "admin": await _token(sessionmaker, settings, "admin@example.com", "admin"),
        "alice": await _token(sessionmaker, settings, "alice@example.com", "member"),
        "eve": await _stranger(sessionmaker, settings),
        **{f"key:{who}": key for who, key in keys.items()},
    }
    async with serving_gateway(settings) as (url, _gw), httpx.AsyncClient(base_url=url, timeout=20) as http:
        for i in range(3):
            call = modern_tool_call(keys["alice"], "fx__echo", {"text": f"{i} {CANARY}"}, call_id=i)
            assert (await http.post("/mcp", **call)).status_code == 200  # type: ignore[arg-type]
        await http.post("/mcp", **modern_tool_call(keys["bob"], "fx__echo", {"text": "hi"}))  # type: ignore[arg-type]
        await http.post("/mcp", **modern_tool_call(keys["bob"], "fx__add", {"a": 1, "b": 2}))  # type: ignore[arg-type]
        async with asyncio.timeout(15):
            while True:
                if len(await _calls(http, tokens["admin"])) >= 5:
                    break
                await asyncio.sleep(0.05)
        yield http, tokens


async def test_admins_read_the_org_trail_newest_first_with_every_filter(
    world: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = world
    admin = tokens["admin"]
    calls = await _calls(http, admin)
    assert len(calls) == 5
    assert [r["id"] for r in calls] == sorted((r["id"] for r in calls), reverse=True)
    assert calls[0]["tool_name"] == "fx__add" and calls[0]["status"] == "denied"
    assert {r["server"] for r in calls} == {"main"}
    assert all(r["payload_stored"] for r in calls)
    bob_prefix = calls[0]["key_prefix"]
    assert len(await _calls(http, admin, user="bob@example.com")) == 2
    assert len(await _calls(http, admin, key=bob_prefix)) == 2
    assert [r["tool_name"] for r in await _calls(http, admin, status="denied")] == ["fx__add"]
    assert len(await _calls(http, admin, tool="fx__echo")) == 4
    assert len(await _calls(http, admin, channel="mcp", server="main")) == 5
    assert await _calls(http, admin, channel="cli") == []
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert await _calls(http, admin, since=future) == []
    assert len(await _calls(http, admin, since=past, until=future)) == 5
    bad = await http.get("/api/v1/orgs/default/logs", params={"status": "maybe"}, headers=_auth(admin))
    assert bad.status_code == 422 and bad.json()["error"]["code"]


async def test_members_read_only_their_own_records_and_strangers_nothing(
    world: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = world
    mine = await _all(http, tokens["alice"])
    assert mine and {r["user_id"] for r in mine} == {mine[0]["user_id"]}
    assert len([r for r in mine if r["method"] == "tools/call"]) == 3
    others = await http.get("/api/v1/orgs/default/logs?user=bob@example.com", headers=_auth(tokens["alice"]))
    assert others.status_code == 403
    bob_record = (await _calls(http, tokens["admin"], user="bob@example.com"))[0]["id"]
    one = await http.get(f"/api/v1/orgs/default/logs/{bob_record}", headers=_auth(tokens["alice"]))
    assert one.status_code == 403
    payload = await http.get(f"/api/v1/orgs/default/logs/{bob_record}/payload", headers=_auth(tokens["alice"]))
    assert payload.status_code == 403
    for path in ("/api/v1/orgs/default/logs", f"/api/v1/orgs/default/logs/{bob_record}"):
        assert (await http.get(path, headers=_auth(tokens["eve"]))).status_code == 404
    # An API key is not a login: it cannot read the trail.
    assert (await http.get("/api/v1/orgs/default/logs", headers=_auth(tokens["key:alice"]))).status_code == 401


async def test_one_record_and_its_payload_decompressed_and_redacted(
    world: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = world
    record = (await _calls(http, tokens["alice"], tool="fx__echo"))[0]
    one = await http.get(f"/api/v1/orgs/default/logs/{record['id']}", headers=_auth(tokens["alice"]))
    assert one.status_code == 200 and one.json() == record
    assert "payload_key" not in record
    response = await http.get(f"/api/v1/orgs/default/logs/{record['id']}/payload", headers=_auth(tokens["alice"]))
    assert response.status_code == 200
    document = response.json()
    assert document["record_id"] == record["id"]
    assert document["request"]["params"]["name"] == "fx__echo"
    assert CANARY not in response.text  # the credential-looking argument was redacted before storage
    missing = await http.get(f"/api/v1/orgs/default/logs/{'0' * 32}", headers=_auth(tokens["admin"]))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def _events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            found.append(orjson.loads(line[6:]))
            if len(found) == count:
                return found
    raise AssertionError("the stream ended")


async def test_the_stream_follows_new_records_of_the_callers_scope(
    world: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    http, tokens = world
    params = {"tool": "fx__echo"}
    async with http.stream(
        "GET", "/api/v1/orgs/default/logs/stream", params=params, headers=_auth(tokens["alice"])
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        # Bob's call comes first and is not Alice's; hers follows.
        await http.post("/mcp", **modern_tool_call(tokens["key:bob"], "fx__echo", {"text": "bob"}))  # type: ignore[arg-type]
        await http.post("/mcp", **modern_tool_call(tokens["key:alice"], "fx__echo", {"text": "new"}))  # type: ignore[arg-type]
        async with asyncio.timeout(15):
            (event,) = await _events(stream, 1)
    assert event["tool_name"] == "fx__echo" and event["key_prefix"] == tokens["key:alice"][:12]
    # Reconnecting with Last-Event-ID replays what came after it, nothing before.
    headers = {**_auth(tokens["admin"]), "last-event-id": event["id"]}
    await http.post("/mcp", **modern_tool_call(tokens["key:bob"], "fx__echo", {"text": "later"}))  # type: ignore[arg-type]
    async with http.stream("GET", "/api/v1/orgs/default/logs/stream", params=params, headers=headers) as stream:
        async with asyncio.timeout(15):
            (later,) = await _events(stream, 1)
    assert later["id"] > event["id"] and later["key_prefix"] == tokens["key:bob"][:12]
