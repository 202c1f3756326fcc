"""A user in several orgs acts in each by naming it in the path, with the role they have there."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.web.api.conftest import org_with, person, stock_org

pytestmark = pytest.mark.anyio


async def test_one_token_switches_between_orgs_and_the_role_follows_the_org(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    ada = await person(sessionmaker, settings, "ada@example.com")
    bob = await person(sessionmaker, settings, "bob@example.com")
    mine = await org_with(sessionmaker, "Ada's team", [(ada, "owner")])
    theirs = await org_with(sessionmaker, "Bob's team", [(bob, "owner"), (ada, "member")])
    for slug in (mine, theirs):
        await stock_org(sessionmaker, settings, slug)
    listed = (await client.get("/api/v1/orgs", headers=ada.headers)).json()["items"]
    assert {o["slug"]: o["role"] for o in listed if not o["personal"]} == {mine: "owner", theirs: "member"}
    for slug, allowed in ((mine, 201), (theirs, 403)):
        made = await client.post(
            f"/api/v1/orgs/{slug}/servers", json={"name": "extra", "upstreams": ["clock"]}, headers=ada.headers
        )
        assert made.status_code == allowed, made.text
        servers = (await client.get(f"/api/v1/orgs/{slug}/servers", headers=ada.headers)).json()["items"]
        assert {s["slug"] for s in servers} == ({"main", "extra"} if allowed == 201 else {"main"})
    # Bob is not in Ada's team: it does not exist for him.
    assert (await client.get(f"/api/v1/orgs/{mine}/servers", headers=bob.headers)).status_code == 404
