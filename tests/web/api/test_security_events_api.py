"""Security events of the REST API: logins, failed logins and credentials, membership changes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.web.api.conftest import org_with, person

pytestmark = pytest.mark.anyio

PASSWORD = "violet hammer 42"


async def _events(sessionmaker: async_sessionmaker[AsyncSession], name: str, count: int) -> list[AuditRecord]:
    """The ``name`` events, waiting for the audit writer until there are ``count``."""
    async with asyncio.timeout(10):
        while True:
            async with sessionmaker() as session:
                rows = list(
                    (
                        await session.scalars(
                            select(AuditRecord).where(AuditRecord.event == name).order_by(AuditRecord.id)
                        )
                    ).all()
                )
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.02)


async def test_logins_and_failed_logins_are_recorded_without_the_password(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    created = await client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD})
    user_id = created.json()["id"]
    headers = {"user-agent": "console/1"}
    ok = await client.post(
        "/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD}, headers=headers
    )
    assert ok.status_code == 200
    wrong = {"email": "ada@example.com", "password": "not the password 9"}
    assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 401
    unknown = {"email": "who@example.com", "password": "not the password 9"}
    assert (await client.post("/api/v1/auth/login", json=unknown)).status_code == 401
    (login,) = await _events(sessionmaker, "login", 1)
    assert (login.user_id, login.auth_method, login.channel, login.user_agent) == (
        user_id,
        "password",
        "api",
        "console/1",
    )
    failed = await _events(sessionmaker, "login.failed", 2)
    assert [(r.user_id, r.status, r.http_status) for r in failed] == [(user_id, "denied", 401), (None, "denied", 401)]
    assert not [r for r in [*failed, login] if "not the password" in repr(vars(r)) or PASSWORD in repr(vars(r))]


async def test_a_bad_token_or_an_ended_session_is_a_failed_authentication(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    bogus = "pbu_" + "Qx7" * 12
    assert (await client.get("/api/v1/me", headers={"authorization": f"Bearer {bogus}"})).status_code == 401
    client.cookies.set("patchbay_session", "gone")
    assert (await client.get("/api/v1/me")).status_code == 401
    failed = await _events(sessionmaker, "auth.failed", 2)
    assert [(r.auth_method, r.channel, r.http_status) for r in failed] == [
        ("token", "api", 401),
        ("session", "api", 401),
    ]
    assert not [r for r in failed if bogus in repr(vars(r)) or bogus[4:] in repr(vars(r))]


async def test_membership_changes_are_permission_changes(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner = await person(sessionmaker, settings, "owner@example.com")
    other = await person(sessionmaker, settings, "other@example.com")
    slug = await org_with(sessionmaker, "Team", [(owner, "owner")])
    base = f"/api/v1/orgs/{slug}/members"
    assert (await client.post(base, json={"email": other.email}, headers=owner.headers)).status_code == 201
    patched = await client.patch(f"{base}/{other.id}", json={"role": "admin"}, headers=owner.headers)
    assert patched.status_code == 200
    assert (await client.delete(f"{base}/{other.id}", headers=owner.headers)).status_code == 204
    refused = await client.patch(f"{base}/{owner.id}", json={"role": "member"}, headers=owner.headers)
    assert refused.status_code == 409  # the last owner: no change, and no event
    events = await _events(sessionmaker, "permission.changed", 3)
    assert [(r.user_id, r.detail) for r in events] == [
        (other.id, "member added as member"),
        (other.id, "role member -> admin"),
        (other.id, "member (admin) removed, 0 keys revoked"),
    ]
    assert {r.org_id for r in events} == {events[0].org_id} and events[0].org_id is not None
