"""Property: with random orgs, members, servers and keys, nobody lists, reads, calls or changes anything
outside what they were granted."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.runtime import Gateway
from patchbay.services.keys import create_key
from patchbay.services.orgs import get_org
from patchbay.services.servers import create_server, get_server
from patchbay.settings import Settings
from patchbay.store.models import User
from tests.web.api.conftest import Person, org_with, person, stock_org

pytestmark = pytest.mark.anyio

ROLE = st.sampled_from(["owner", "admin", "member"])


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    n_users = draw(st.integers(2, 4))
    n_orgs = draw(st.integers(1, 3))
    orgs = []
    for _ in range(n_orgs):
        owner = draw(st.integers(0, n_users - 1))
        others = draw(st.dictionaries(st.integers(0, n_users - 1), ROLE, max_size=n_users))
        others.pop(owner, None)
        servers = draw(st.integers(0, 2))
        orgs.append({"owner": owner, "others": others, "servers": servers})
    key_plan = draw(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.integers(0, 3)), max_size=8))
    return {"users": n_users, "orgs": orgs, "keys": key_plan}


@dataclass
class Truth:
    slugs: list[str] = field(default_factory=list)
    roles: dict[tuple[int, str], str] = field(default_factory=dict)  # (user, slug) -> role
    servers: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # slug -> server slugs
    keys: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))  # slug -> prefix -> owner
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)  # key secret -> (org id, server id)


async def build(
    world: dict[str, Any], sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> tuple[list[Person], Truth]:
    tag = uuid.uuid4().hex[:8]
    people = [await person(sessionmaker, settings, f"u{i}-{tag}@example.com") for i in range(int(world["users"]))]
    truth = Truth()
    for index, plan in enumerate(world["orgs"]):
        members = [(people[plan["owner"]], "owner"), *((people[u], r) for u, r in plan["others"].items())]
        slug = await org_with(sessionmaker, f"org {index} {tag}", members)
        truth.slugs.append(slug)
        for who, role in members:
            truth.roles[(people.index(who), slug)] = role
        if plan["servers"]:
            await stock_org(sessionmaker, settings, slug, server="s0")
            truth.servers[slug].add("s0")
            async with sessionmaker() as session:
                org = await get_org(session, slug=slug)
                for n in range(1, plan["servers"]):
                    await create_server(
                        session, org_id=org.id, name=f"s{n}", upstream_slugs=["clock"], tools=None, plain_names=False
                    )
                    truth.servers[slug].add(f"s{n}")
                await session.commit()
    for org_pick, server_pick, user_pick in world["keys"]:
        if not truth.slugs:
            break
        slug = truth.slugs[org_pick % len(truth.slugs)]
        members = sorted(u for (u, s) in truth.roles if s == slug)
        servers = sorted(truth.servers[slug])
        if not servers:
            continue
        owner = members[user_pick % len(members)]
        async with sessionmaker() as session:
            org = await get_org(session, slug=slug)
            server = await get_server(session, org_id=org.id, name_or_slug=servers[server_pick % len(servers)])
            user = await session.get(User, people[owner].id)
            assert user is not None
            key, secret = await create_key(
                session,
                server=server,
                user=user,
                name="",
                allow=None,
                expires_in=None,
                secret=settings.resolve_secret_key(),
            )
            await session.commit()
            truth.keys[slug][key.prefix] = owner
            truth.secrets[secret] = (org.id, server.id)
    return people, truth


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(world=worlds())
async def test_nobody_sees_or_touches_anything_outside_their_grants(
    world: dict[str, Any],
    client: httpx.AsyncClient,
    gateway: Gateway,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    people, truth = await build(world, sessionmaker, gateway.settings)
    for index, who in enumerate(people):
        listed = (await client.get("/api/v1/orgs", params={"limit": 200}, headers=who.headers)).json()["items"]
        shared = {o["slug"] for o in listed if not o["personal"]}
        assert shared == {s for (u, s) in truth.roles if u == index}
        for slug in truth.slugs:
            role = truth.roles.get((index, slug))
            servers = await client.get(f"/api/v1/orgs/{slug}/servers", headers=who.headers)
            keys = await client.get(f"/api/v1/orgs/{slug}/keys", params={"limit": 200}, headers=who.headers)
            logs = await client.get(f"/api/v1/orgs/{slug}/logs", params={"limit": 200}, headers=who.headers)
            if role is None:
                assert servers.status_code == keys.status_code == logs.status_code == 404
                made = await client.post(
                    f"/api/v1/orgs/{slug}/servers", json={"name": "intruder", "upstreams": []}, headers=who.headers
                )
                assert made.status_code == 404
                for prefix in truth.keys[slug]:
                    # Not even through an org the caller does belong to.
                    for mine in {s for (u, s) in truth.roles if u == index}:
                        gone = await client.delete(f"/api/v1/orgs/{mine}/keys/{prefix}", headers=who.headers)
                        assert gone.status_code == 404
                continue
            assert {s["slug"] for s in servers.json()["items"]} == truth.servers[slug]
            seen = {k["prefix"] for k in keys.json()["items"]}
            expected = {p for p, owner in truth.keys[slug].items() if role != "member" or owner == index}
            assert seen == expected
            # The audit trail follows the same rule: members see their own keys' records only.
            logged = {r["key_prefix"] for r in logs.json()["items"] if r["event"] == "key.created"}
            assert logged == expected
    # A key opens its own server of its own org, and nothing else.
    for secret, (org_id, server_id) in truth.secrets.items():
        principal = await gateway.resolver.resolve(secret)
        assert (principal.org_id, principal.server_id) == (org_id, server_id)
