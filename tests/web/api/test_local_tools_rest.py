"""Local tools over REST: tool keys, rate limits, tenancy, sessions, management routes, parallel writers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.services.local_tools import find_tool
from patchbay.services.orgs import add_member, ensure_default_org, get_org
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord, ToolAccessKey
from tests.harness import make_key
from tests.local_tools.support import SHOP, provision, read_document
from tests.web.api.conftest import Person, org_with, person
from tests.web.api.test_accounts import register_and_login

pytestmark = pytest.mark.anyio


async def tool_id(sessionmaker: async_sessionmaker[AsyncSession], name: str, org: str = "default") -> str:
    async with sessionmaker() as session:
        found = await get_org(session, slug=org)
        return (await find_tool(session, org_id=found.id, name=name)).id


async def admin_of_default(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> Person:
    admin = await person(sessionmaker, settings, "admin@example.com")
    async with sessionmaker() as session:
        await add_member(session, org=await ensure_default_org(session), user_id=admin.id, role="admin")
        await session.commit()
    return admin


async def new_tool_key(client: httpx.AsyncClient, admin: Person, tool: str, **extra: Any) -> tuple[str, str]:
    created = await client.post("/api/v1/orgs/default/tool-keys", json={"tool": tool, **extra}, headers=admin.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    return body["key"]["prefix"], body["secret"]


def execute(tool: str, key: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"url": f"/api/v1/tools/{tool}/execute", "json": arguments or {}, "headers": {"X-Tool-Key": key}}


async def test_tool_keys_are_shown_once_scoped_expire_and_are_revoked(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await provision(sessionmaker)
    admin = await admin_of_default(sessionmaker, settings)
    finder, adder = await tool_id(sessionmaker, "find_items"), await tool_id(sessionmaker, "add_item")
    read_prefix, reader = await new_tool_key(client, admin, "find_items", scopes=["read"], name="r")
    _p, add_reader = await new_tool_key(client, admin, "add_item", scopes=["read"])
    _p, writer = await new_tool_key(client, admin, "add_item", scopes=["execute"], expires_in="1h")
    assert reader.startswith(read_prefix) and len(reader) > len(read_prefix)

    listed = (await client.get("/api/v1/orgs/default/tool-keys", headers=admin.headers)).text
    assert reader not in listed and read_prefix in listed
    async with sessionmaker() as session:
        stored = (await session.scalars(select(ToolAccessKey))).all()
        assert all(reader not in (k.secret_hash, k.prefix) for k in stored)

    ok = await client.post(**execute(finder, reader, {"expression": "[0].name"}))
    assert (ok.status_code, ok.json()) == (200, {"result": "apple", "version": 1})
    refused = await client.post(**execute(adder, add_reader, {"value": 1}))
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
    other_tool = await client.post(**execute(adder, reader, {"value": 1}))
    assert other_tool.status_code == 403 and "another tool" in other_tool.json()["error"]["message"]
    assert (await client.post(**execute(adder, writer, {"value": 1}))).status_code == 200

    async with sessionmaker() as session:
        await session.execute(
            update(ToolAccessKey)
            .where(ToolAccessKey.tool_id == adder, ToolAccessKey.expires_at.is_not(None))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await session.commit()
    expired = await client.post(**execute(adder, writer, {"value": 2}))
    assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]

    revoked = await client.delete(f"/api/v1/orgs/default/tool-keys/{read_prefix}", headers=admin.headers)
    assert revoked.status_code == 204
    after = await client.post(**execute(finder, reader, {"expression": "@"}))
    assert after.status_code == 401 and "revoked" in after.json()["error"]["message"]
    value, version = await read_document(sessionmaker)
    assert (value["items"][-1], version) == (1, 2)  # only the one allowed write happened


async def test_a_call_over_a_rate_limit_is_429_with_retry_after(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await provision(sessionmaker)
    admin = await admin_of_default(sessionmaker, settings)
    limited = await client.put("/api/v1/orgs/default/tools/read_meta", json={"rate_limit": 1}, headers=admin.headers)
    assert (limited.status_code, limited.json()["rate_limit"]) == (200, 1)
    _p, key = await new_tool_key(client, admin, "read_meta")
    target = await tool_id(sessionmaker, "read_meta")
    assert (await client.post(**execute(target, key))).status_code == 200
    over = await client.post(**execute(target, key))
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "rate_limited"
    assert int(over.headers["retry-after"]) >= 1
    assert "1 calls per minute" in over.json()["error"]["message"]


async def test_every_rest_call_leaves_one_api_audit_row(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, gateway: Any
) -> None:
    await provision(sessionmaker)
    admin = await admin_of_default(sessionmaker, settings)
    await client.put("/api/v1/orgs/default/tools/read_meta", json={"rate_limit": 1}, headers=admin.headers)
    _p, key = await new_tool_key(client, admin, "read_meta")
    target = await tool_id(sessionmaker, "read_meta")
    statuses = [(await client.post(**execute(target, key))).status_code for _ in range(2)]
    statuses.append((await client.post(**execute(target, key, {"bad": 1}))).status_code)
    await gateway.audit.flush()
    async with sessionmaker() as session:
        rows = (await session.execute(select(AuditRecord).where(AuditRecord.method == "tools/call"))).scalars().all()
    assert statuses == [200, 429, 429]
    assert sorted((r.channel, r.status, r.http_status, r.auth_method, r.tool_id) for r in rows) == [
        ("api", "limited", 429, "tool_key", target),
        ("api", "limited", 429, "tool_key", target),
        ("api", "ok", 200, "tool_key", target),
    ]


async def test_another_orgs_tool_is_not_found_whatever_the_credential(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await provision(sessionmaker)
    admin = await admin_of_default(sessionmaker, settings)
    _p, key = await new_tool_key(client, admin, "find_items")
    api_key = await make_key(sessionmaker, settings, server="docs")
    stranger = await person(sessionmaker, settings, "stranger@example.com")
    other = await org_with(sessionmaker, "Other", [(stranger, "owner")])
    made = await client.post(
        f"/api/v1/orgs/{other}/documents", json={"name": "secret", "value": {"a": [1]}}, headers=stranger.headers
    )
    assert made.status_code == 201, made.text
    tool = await client.post(
        f"/api/v1/orgs/{other}/tools",
        json={"name": "peek", "document": "secret", "path": "/a", "type": "get"},
        headers=stranger.headers,
    )
    assert tool.status_code == 201, tool.text
    theirs = tool.json()["id"]
    for headers in ({"X-Tool-Key": key}, {"Authorization": f"Bearer {api_key}"}, admin.headers):
        answer = await client.post(f"/api/v1/tools/{theirs}/execute", json={}, headers=headers)
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_found"), headers
        assert other not in answer.text
    assert (await client.get(f"/api/v1/orgs/{other}/tools/{theirs}", headers=admin.headers)).status_code == 404
    own = await client.post(f"/api/v1/tools/{theirs}/execute", json={}, headers=stranger.headers)
    assert (own.status_code, own.json()) == (200, {"value": [1], "version": 1})


async def test_bad_credentials_and_bodies_are_refused_clearly(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await provision(sessionmaker)
    target = await tool_id(sessionmaker, "read_meta")
    cases = [
        ({}, b"{}", 401, "unauthenticated"),
        ({"X-Tool-Key": "pb_nottoolkey"}, b"{}", 401, "unauthenticated"),
        ({"X-Tool-Key": "tk_" + "a" * 40}, b"{}", 401, "unauthenticated"),
        ({"X-API-Key": "pb_" + "a" * 40}, b"{}", 401, "unauthenticated"),
    ]
    for headers, body, status, code in cases:
        answer = await client.post(f"/api/v1/tools/{target}/execute", content=body, headers=headers)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), headers
    unknown = await client.post(
        "/api/v1/tools/0123456789abcdef0123456789abcdef/execute", json={}, headers={"X-API-Key": "pb_x"}
    )
    assert unknown.status_code == 401  # who asks is settled before what is asked for


async def test_a_cookie_session_needs_its_csrf_token_to_execute(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    csrf = await register_and_login(client)
    org = (await client.get("/api/v1/orgs")).json()["items"][0]["slug"]
    made = await client.post(f"/api/v1/orgs/{org}/documents", json={"name": "n", "value": [1, 2]}, headers=csrf)
    assert made.status_code == 201, made.text
    tool = await client.post(
        f"/api/v1/orgs/{org}/tools", json={"name": "count", "document": "n", "path": "", "type": "query"}, headers=csrf
    )
    target = tool.json()["id"]
    body = {"expression": "length(@)"}
    without = await client.post(f"/api/v1/tools/{target}/execute", json=body)
    assert without.status_code == 403 and "CSRF" in without.json()["error"]["message"]
    with_token = await client.post(f"/api/v1/tools/{target}/execute", json=body, headers=csrf)
    assert (with_token.status_code, with_token.json()) == (200, {"result": 2, "version": 1})
    by_name = await client.post(f"/api/v1/tools/count/execute?org={org}", json=body, headers=csrf)
    assert by_name.status_code == 200


async def test_documents_are_created_read_replaced_and_deleted_with_clear_limits(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    settings.max_document_bytes = 200
    admin = await admin_of_default(sessionmaker, settings)
    base = "/api/v1/orgs/default"
    project = await client.post(f"{base}/projects", json={"name": "Inventory"}, headers=admin.headers)
    assert (project.status_code, project.json()["slug"]) == (201, "inventory")
    doc = await client.post(
        f"{base}/documents", json={"name": "Stock", "value": {"n": 1}, "project": "inventory"}, headers=admin.headers
    )
    assert doc.status_code == 201 and doc.json()["version"] == 1
    too_big = await client.post(f"{base}/documents", json={"name": "big", "value": "x" * 300}, headers=admin.headers)
    assert too_big.status_code == 413 and "more than the limit of 200" in too_big.json()["error"]["message"]
    taken = await client.post(f"{base}/documents", json={"name": "stock", "value": 1}, headers=admin.headers)
    assert taken.status_code == 409
    replaced = await client.put(
        f"{base}/documents/stock", json={"value": {"n": 2}, "version": 1}, headers=admin.headers
    )
    assert (replaced.status_code, replaced.json()["version"], replaced.json()["value"]) == (200, 2, {"n": 2})
    stale = await client.put(f"{base}/documents/stock", json={"value": {"n": 3}, "version": 1}, headers=admin.headers)
    assert stale.status_code == 409 and "version 2, not 1" in stale.json()["error"]["message"]
    beyond = await client.put(f"{base}/documents/stock", json={"value": {}, "version": 2**31}, headers=admin.headers)
    assert beyond.status_code in (400, 422) and "version" in beyond.text
    oversized = await client.put(f"{base}/documents/stock", json={"value": "y" * 300}, headers=admin.headers)
    assert oversized.status_code == 413
    read = await client.get(f"{base}/documents/stock", headers=admin.headers)
    assert (read.json()["value"], read.json()["version"]) == ({"n": 2}, 2)
    listed = await client.get(f"{base}/documents?project=inventory", headers=admin.headers)
    assert [(d["slug"], d["project"]) for d in listed.json()["items"]] == [("stock", "inventory")]
    projects = (await client.get(f"{base}/projects", headers=admin.headers)).json()["items"]
    assert {p["slug"]: p["documents"] for p in projects} == {"inventory": 1}
    assert (await client.delete(f"{base}/projects/inventory", headers=admin.headers)).status_code == 409
    await client.post(
        f"{base}/tools", json={"name": "n", "document": "stock", "path": "/n", "type": "get"}, headers=admin.headers
    )
    busy = await client.delete(f"{base}/documents/stock", headers=admin.headers)
    assert busy.status_code == 409 and "?force=true" in busy.json()["error"]["message"]
    assert (await client.delete(f"{base}/documents/stock?force=true", headers=admin.headers)).status_code == 204
    assert (await client.get(f"{base}/documents/stock", headers=admin.headers)).status_code == 404
    assert (await client.get(f"{base}/tools/n", headers=admin.headers)).status_code == 404


async def test_tools_are_managed_and_attached_with_overrides(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await provision(sessionmaker)
    admin = await admin_of_default(sessionmaker, settings)
    base = "/api/v1/orgs/default"
    bad = await client.post(
        f"{base}/tools", json={"name": "x", "document": "shop", "path": "/nope", "type": "get"}, headers=admin.headers
    )
    assert bad.status_code == 422 and "no value at /nope" in bad.json()["error"]["message"]
    dup = await client.post(
        f"{base}/tools", json={"name": "y", "document": "shop", "path": "/meta", "type": "get"}, headers=admin.headers
    )
    assert dup.status_code == 409
    made = await client.post(
        f"{base}/tools",
        json={"name": "owner", "document": "shop", "path": "/meta/owner", "type": "get", "rate_limit": 5},
        headers=admin.headers,
    )
    assert made.status_code == 201, made.text
    assert {k: made.json()[k] for k in ("local", "type", "path", "read_only", "rate_limit")} == {
        "local": True,
        "type": "get",
        "path": "/meta/owner",
        "read_only": True,
        "rate_limit": 5,
    }
    local = await client.get(f"{base}/tools?kind=local&q=ITEM&limit=2", headers=admin.headers)
    page = local.json()
    assert len(page["items"]) == 2 and page["next_cursor"] is not None
    rest = await client.get(
        f"{base}/tools?kind=local&q=ITEM&limit=2&cursor={page['next_cursor']}", headers=admin.headers
    )
    names = {t["name"] for t in page["items"]} | {t["name"] for t in rest.json()["items"]}
    assert names == {"find_items", "add_item", "edit_items", "drop_item"}
    renamed = await client.put(
        f"{base}/tools/owner",
        json={"name": "who", "description": "The owner.", "rate_limit": None},
        headers=admin.headers,
    )
    assert [renamed.json()[k] for k in ("name", "description", "rate_limit")] == ["who", "The owner.", None]
    attached = await client.put(
        f"{base}/servers/docs/tools/who",
        json={"name": "owner_of_shop", "description": "Whose shop."},
        headers=admin.headers,
    )
    assert (attached.status_code, attached.json()["name"], attached.json()["enabled"]) == (200, "owner_of_shop", True)
    key = await make_key(sessionmaker, settings, server="docs")
    called = await client.post(
        "/api/v1/tools/owner_of_shop/execute", json={}, headers={"Authorization": f"Bearer {key}"}
    )
    assert called.json() == {"value": "ann", "version": 1}
    switched = await client.put(f"{base}/servers/docs/tools/who", json={"enabled": False}, headers=admin.headers)
    assert (switched.json()["name"], switched.json()["enabled"]) == ("who", False)
    gone = await client.post("/api/v1/tools/owner_of_shop/execute", json={}, headers={"Authorization": f"Bearer {key}"})
    assert gone.status_code == 404
    assert (await client.delete(f"{base}/servers/docs/tools/who", headers=admin.headers)).status_code == 204
    assert (await client.delete(f"{base}/servers/docs/tools/who", headers=admin.headers)).status_code == 404
    upstream_rename = await client.put(f"{base}/tools/nope__x", json={"name": "z"}, headers=admin.headers)
    assert upstream_rename.status_code == 404
    assert (await client.delete(f"{base}/tools/who", headers=admin.headers)).status_code == 204
    assert (await client.get(f"{base}/tools/who", headers=admin.headers)).status_code == 404


async def test_parallel_rest_writers_never_lose_an_update(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await provision(sessionmaker)
    admin = await admin_of_default(sessionmaker, settings)
    _p, key = await new_tool_key(client, admin, "add_item")
    target = await tool_id(sessionmaker, "add_item")
    writers = 24
    answers = await asyncio.gather(
        *(client.post(**execute(target, key, {"value": {"name": f"n{i}", "price": i}})) for i in range(writers))
    )
    assert [a.status_code for a in answers] == [200] * writers
    indexes = sorted(a.json()["index"] for a in answers)
    versions = sorted(a.json()["version"] for a in answers)
    assert indexes == list(range(2, 2 + writers)) and versions == list(range(2, 2 + writers))
    value, version = await read_document(sessionmaker)
    assert version == 1 + writers
    assert value["items"][:2] == SHOP["items"]
    assert sorted(item["name"] for item in value["items"][2:]) == sorted(f"n{i}" for i in range(writers))


async def test_an_api_key_reaches_only_what_its_server_exposes_and_its_grants_allow(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await provision(sessionmaker)
    key = await make_key(sessionmaker, settings, server="docs", allow=[("find_items", "r")])
    headers = {"Authorization": f"Bearer {key}"}
    found = await client.post("/api/v1/tools/find_items/execute", json={"expression": "length(@)"}, headers=headers)
    assert (found.status_code, found.json()["result"]) == (200, 2)
    by_id = await client.post(
        f"/api/v1/tools/{await tool_id(sessionmaker, 'find_items')}/execute", json={"expression": "@"}, headers=headers
    )
    assert by_id.status_code == 200
    denied = await client.post("/api/v1/tools/add_item/execute", json={"value": 1}, headers=headers)
    assert denied.status_code == 403 and "add_item" in denied.json()["error"]["message"]
    ungranted = await client.post("/api/v1/tools/read_meta/execute", json={}, headers=headers)
    assert ungranted.status_code == 403
    unexposed = await client.post("/api/v1/tools/nothing_here/execute", json={}, headers=headers)
    assert unexposed.status_code == 404
    assert (await read_document(sessionmaker))[1] == 1
