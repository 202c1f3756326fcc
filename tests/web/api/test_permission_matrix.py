"""Every role × every action × own org / another org: allowed answers 2xx, a weaker role 403, a stranger 404."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.engine.runner import Limits
from patchbay.services.documents import create_document
from patchbay.services.keys import create_key
from patchbay.services.local_tools import create_local_tool
from patchbay.services.orgs import get_org
from patchbay.services.servers import get_server
from patchbay.services.tool_keys import create_tool_key
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord, User
from tests.web.api.conftest import Person, add_org_upstream, org_with, person, stock_org

pytestmark = pytest.mark.anyio

RANK = {"member": 1, "admin": 2, "owner": 3, "nobody": 99}


@dataclass
class World:
    org: dict[str, str]  # "own" / "other" -> slug
    people: dict[str, Person]
    key_of: dict[str, str]  # holder name -> key prefix, in their org
    tool_of: dict[str, str]  # "own" / "other" -> id of the org's local tool shop_items
    tool_key_of: dict[str, str]  # "own" / "other" -> prefix of a key to that tool
    record_of: dict[str, str]  # holder name -> id of the audit record of their key's creation


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    least: str  # the least role allowed; "nobody" when no org role suffices
    body: Callable[[World, str], Any] | None = None


def _own_key(world: World, role: str) -> str:
    return world.key_of[role]


CASES = [
    Case("read org", "GET", "/orgs/{org}", "member"),
    Case("list members", "GET", "/orgs/{org}/members", "member"),
    Case("add member", "POST", "/orgs/{org}/members", "owner", lambda w, r: {"email": w.people["newbie"].email}),
    Case("change role", "PATCH", "/orgs/{org}/members/{spare}", "owner", lambda w, r: {"role": "admin"}),
    Case("remove member", "DELETE", "/orgs/{org}/members/{spare}", "owner"),
    Case("list upstreams", "GET", "/orgs/{org}/upstreams", "member"),
    Case("read upstream", "GET", "/orgs/{org}/upstreams/clock", "member"),
    Case(
        "add stdio upstream",
        "POST",
        "/orgs/{org}/upstreams",
        "nobody",
        lambda w, r: {"name": "shell", "command": ["/bin/true"]},
    ),
    Case("remove upstream", "DELETE", "/orgs/{org}/upstreams/spare-clock", "admin"),
    Case("list tool reviews", "GET", "/orgs/{org}/tool-reviews", "admin"),
    Case("change upstream metadata", "PATCH", "/orgs/{org}/upstreams/clock", "admin", lambda w, r: {"tags": ["t"]}),
    Case(
        "import upstreams",
        "POST",
        "/orgs/{org}/upstreams/import",
        "admin",
        lambda w, r: {"mcpServers": {"gone": {"type": "http", "url": "http://127.0.0.1:9/mcp"}}},
    ),
    Case("read which values are set", "GET", "/orgs/{org}/upstreams/clock/config", "member"),
    Case(
        "set the org's values",
        "PUT",
        "/orgs/{org}/upstreams/clock/config?level=org",
        "admin",
        lambda w, r: {"headers": {"X-Org": "v"}},
    ),
    Case(
        "set one's own values",
        "PUT",
        "/orgs/{org}/upstreams/clock/config?level=mine",
        "member",
        lambda w, r: {"headers": {"X-Mine": "v"}},
    ),
    Case("list servers", "GET", "/orgs/{org}/servers", "member"),
    Case("read server", "GET", "/orgs/{org}/servers/main", "member"),
    Case(
        "create server",
        "POST",
        "/orgs/{org}/servers",
        "admin",
        lambda w, r: {"name": f"new {r}", "upstreams": ["clock"]},
    ),
    Case("list org tools", "GET", "/orgs/{org}/tools", "member"),
    Case("list server tools", "GET", "/orgs/{org}/servers/main/tools", "member"),
    Case(
        "switch tools",
        "PATCH",
        "/orgs/{org}/servers/main/tools",
        "admin",
        lambda w, r: {"disable": ["clock__set_alarm"]},
    ),
    Case("change server options", "PATCH", "/orgs/{org}/servers/main", "admin", lambda w, r: {"compact": False}),
    Case("change server upstreams", "PATCH", "/orgs/{org}/servers/main/upstreams", "admin", lambda w, r: {}),
    Case("list keys", "GET", "/orgs/{org}/keys", "member"),
    Case("create own key", "POST", "/orgs/{org}/keys", "member", lambda w, r: {"server": "main"}),
    Case(
        "create key for another member",
        "POST",
        "/orgs/{org}/keys",
        "admin",
        lambda w, r: {"server": "main", "user": w.people["keyholder"].email},
    ),
    Case("revoke own key", "DELETE", "/orgs/{org}/keys/{own_key}", "member"),
    Case("revoke another's key", "DELETE", "/orgs/{org}/keys/{keyholder_key}", "admin"),
    Case("list projects", "GET", "/orgs/{org}/projects", "member"),
    Case("create project", "POST", "/orgs/{org}/projects", "admin", lambda w, r: {"name": f"p {r}"}),
    Case("list documents", "GET", "/orgs/{org}/documents", "member"),
    Case("read document", "GET", "/orgs/{org}/documents/shop", "member"),
    Case("create document", "POST", "/orgs/{org}/documents", "admin", lambda w, r: {"name": f"d {r}", "value": 1}),
    Case("replace document", "PUT", "/orgs/{org}/documents/shop", "admin", lambda w, r: {"value": {"items": [1]}}),
    Case(
        "create local tool",
        "POST",
        "/orgs/{org}/tools",
        "admin",
        lambda w, r: {"name": "shop_get", "document": "shop", "path": "/items", "type": "get"},
    ),
    Case("read tool", "GET", "/orgs/{org}/tools/{shop_tool}", "member"),
    Case("update tool", "PUT", "/orgs/{org}/tools/{shop_tool}", "admin", lambda w, r: {"rate_limit": 100}),
    Case("attach tool", "PUT", "/orgs/{org}/servers/main/tools/{shop_tool}", "admin", lambda w, r: {"name": "items"}),
    Case("detach tool", "DELETE", "/orgs/{org}/servers/main/tools/{shop_tool}", "admin"),
    Case("execute a tool as oneself", "POST", "/tools/{shop_tool}/execute", "member", lambda w, r: {"expression": "@"}),
    Case("list tool keys", "GET", "/orgs/{org}/tool-keys", "admin"),
    Case("create tool key", "POST", "/orgs/{org}/tool-keys", "admin", lambda w, r: {"tool": "shop_items"}),
    Case("revoke tool key", "DELETE", "/orgs/{org}/tool-keys/{tool_key}", "admin"),
    Case("delete tool", "DELETE", "/orgs/{org}/tools/{shop_tool}", "admin"),
    Case("delete document", "DELETE", "/orgs/{org}/documents/shop?force=true", "admin"),
    Case("read one's own audit records", "GET", "/orgs/{org}/logs", "member"),
    Case("read a member's audit records", "GET", "/orgs/{org}/logs?user={keyholder_email}", "admin"),
    Case("read one's own key's audit record", "GET", "/orgs/{org}/logs/{own_key_record}", "member"),
    Case("read another key's audit record", "GET", "/orgs/{org}/logs/{keyholder_key_record}", "admin"),
]


async def build_world(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> World:
    names = ["owner", "admin", "member", "spare", "keyholder", "newbie", "stranger"]
    people = {n: await person(sessionmaker, settings, f"{n}@example.com") for n in names}
    own = await org_with(
        sessionmaker,
        "Own",
        [(people[n], n if n in RANK else "member") for n in ["owner", "admin", "member", "spare", "keyholder"]],
    )
    other = await org_with(sessionmaker, "Other", [(people["stranger"], "owner")])
    key_of: dict[str, str] = {}
    tool_of: dict[str, str] = {}
    tool_key_of: dict[str, str] = {}
    for where, slug in (("own", own), ("other", other)):
        await stock_org(sessionmaker, settings, slug)
        await add_org_upstream(sessionmaker, settings, slug, "spare clock")
        async with sessionmaker() as session:
            org = await get_org(session, slug=slug)
            server = await get_server(session, org_id=org.id, name_or_slug="main")
            holders = ["owner", "admin", "member", "keyholder"] if slug == own else ["stranger"]
            for holder in holders:
                user = await session.get(User, people[holder].id)
                assert user is not None
                key, _secret = await create_key(
                    session, server=server, user=user, name="", allow=None, expires_in=None, secret=b"x" * 32
                )
                key_of[holder] = key.prefix
            await create_document(
                session, org_id=org.id, name="shop", value={"items": []}, project=None, limits=Limits()
            )
            tool = await create_local_tool(
                session, org_id=org.id, name="shop_items", document="shop", path="/items", kind="query"
            )
            tool_key, _secret = await create_tool_key(
                session,
                org_id=org.id,
                tool=tool,
                name="",
                scopes=[],
                expires_in=None,
                rate_limit=None,
                secret=b"x" * 32,
            )
            tool_of[where], tool_key_of[where] = tool.id, tool_key.prefix
            await session.commit()
    async with sessionmaker() as session:
        rows = await session.execute(
            select(AuditRecord.key_prefix, AuditRecord.id).where(AuditRecord.event == "key.created")
        )
        by_prefix = dict(rows.all())
    record_of = {holder: by_prefix[prefix] for holder, prefix in key_of.items()}
    return World(
        org={"own": own, "other": other},
        people=people,
        key_of=key_of,
        tool_of=tool_of,
        tool_key_of=tool_key_of,
        record_of=record_of,
    )


def _path(case: Case, world: World, role: str, where: str) -> str:
    holder = role if where == "own" else "stranger"
    return "/api/v1" + case.path.format(
        org=world.org[where],
        spare=world.people["spare" if where == "own" else "stranger"].id,
        own_key=world.key_of[holder],
        keyholder_key=world.key_of["keyholder" if where == "own" else "stranger"],
        shop_tool=world.tool_of[where],
        tool_key=world.tool_key_of[where],
        keyholder_email=world.people["keyholder" if where == "own" else "stranger"].email,
        own_key_record=world.record_of[holder],
        keyholder_key_record=world.record_of["keyholder" if where == "own" else "stranger"],
    )


@pytest.mark.parametrize("where", ["own", "other"])
@pytest.mark.parametrize("role", ["owner", "admin", "member"])
async def test_every_action_is_allowed_exactly_for_the_roles_the_policy_names(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    role: str,
    where: str,
) -> None:
    world = await build_world(sessionmaker, settings)
    caller = world.people[role]
    outcomes: dict[str, tuple[int, int]] = {}
    for case in CASES:
        body = case.body(world, role) if case.body else None
        response = await client.request(case.method, _path(case, world, role, where), json=body, headers=caller.headers)
        if where == "other":
            expected = 404
        elif RANK[role] >= RANK[case.least]:
            expected = {"GET": 200, "POST": 201, "PATCH": 200, "PUT": 200, "DELETE": 204}[case.method]
            if case.name == "import upstreams":
                expected = 200  # a report per entry, not one created thing
            if case.name == "execute a tool as oneself":
                expected = 200  # a call, not a creation
        else:
            expected = 403
        outcomes[case.name] = (response.status_code, expected)
    wrong = {name: got for name, got in outcomes.items() if got[0] != got[1]}
    assert wrong == {}, f"(got, expected) per action for {role} in the {where} org"


async def test_members_list_only_their_own_keys_and_admins_list_all(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    world = await build_world(sessionmaker, settings)
    seen = {}
    for role in ("member", "admin"):
        response = await client.get(f"/api/v1/orgs/{world.org['own']}/keys", headers=world.people[role].headers)
        seen[role] = {k["prefix"] for k in response.json()["items"]}
    assert seen["member"] == {world.key_of["member"]}
    assert seen["admin"] == {world.key_of[h] for h in ("owner", "admin", "member", "keyholder")}


async def test_only_platform_administrators_manage_accounts(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    root = await person(sessionmaker, settings, "root@example.com", admin=True)
    owner = await person(sessionmaker, settings, "owner@example.com")
    body = {"email": "new@example.com"}
    assert (await client.get("/api/v1/users", headers=owner.headers)).status_code == 403
    assert (await client.post("/api/v1/users", json=body, headers=owner.headers)).status_code == 403
    assert (await client.post("/api/v1/users", json=body, headers=root.headers)).status_code == 201
    listed = (await client.get("/api/v1/users", headers=root.headers)).json()["items"]
    assert {u["email"] for u in listed} == {"root@example.com", "owner@example.com", "new@example.com"}


async def test_the_last_owner_cannot_leave_or_step_down(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner = await person(sessionmaker, settings, "owner@example.com")
    slug = await org_with(sessionmaker, "Solo", [(owner, "owner")])
    path = f"/api/v1/orgs/{slug}/members/{owner.id}"
    assert (await client.patch(path, json={"role": "admin"}, headers=owner.headers)).status_code == 409
    assert (await client.delete(path, headers=owner.headers)).status_code == 409


async def test_removing_a_member_revokes_their_keys_in_that_org(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    world = await build_world(sessionmaker, settings)
    own = world.org["own"]
    owner = world.people["owner"]
    removed = await client.delete(f"/api/v1/orgs/{own}/members/{world.people['keyholder'].id}", headers=owner.headers)
    assert removed.status_code == 204
    keys = (await client.get(f"/api/v1/orgs/{own}/keys", headers=owner.headers)).json()["items"]
    states = {k["prefix"]: k["state"] for k in keys}
    assert states[world.key_of["keyholder"]] == "revoked"
    assert states[world.key_of["member"]] == "active"
