from __future__ import annotations

from datetime import UTC, timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.auth.keys import hash_key
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.keys import create_key, key_state, list_keys, revoke_key
from patchbay.services.orgs import get_org
from patchbay.services.servers import create_server
from patchbay.services.users import create_user
from patchbay.store.models import ApiKey, ApiKeyToolPermission, Organization, Server, User, utcnow
from tests.services.conftest import TIME_TOOLS, make_upstream, tool

pytestmark = pytest.mark.anyio


@pytest.fixture
async def server(db: AsyncSession, org: Organization, secret: bytes) -> Server:
    await make_upstream(db, org=org, secret=secret, name="time", tools=[*TIME_TOOLS, tool("set_timezone")])
    created = await create_server(db, org_id=org.id, name="s", upstream_slugs=["time"], tools=None, plain_names=False)
    await db.commit()
    return created


@pytest.fixture
async def user(db: AsyncSession, org: Organization) -> User:
    created = await create_user(db, email="alice@example.com", password=None, admin=False)
    await db.commit()
    return created


async def _all_text(db: AsyncSession) -> str:
    tables = ["api_keys", "api_key_tool_permissions", "audit_records", "users", "servers"]
    values: list[str] = []
    for table in tables:
        for row in (await db.execute(text(f"SELECT * FROM {table}"))).all():
            values.extend(str(v) for v in row)
    return "\n".join(values)


async def test_key_secret_is_returned_once_and_stored_only_as_prefix_and_hmac(
    db: AsyncSession, server: Server, user: User, secret: bytes
) -> None:
    key, plain = await create_key(db, server=server, user=user, name="ci", allow=None, expires_in=None, secret=secret)
    await db.commit()
    assert plain.startswith("pb_")
    assert plain.startswith(key.prefix)
    assert key.secret_hash == hash_key(plain, secret)
    assert key.all_tools
    assert key.expires_at is None
    dump = await _all_text(db)
    assert plain not in dump
    assert plain[len(key.prefix) :] not in dump


async def test_allow_list_grants_read_or_read_write(
    db: AsyncSession, server: Server, user: User, secret: bytes
) -> None:
    key, _ = await create_key(
        db,
        server=server,
        user=user,
        name="",
        allow=[("time__get_current_time", "r"), ("time__set_timezone", "rw")],
        expires_in=timedelta(days=30),
        secret=secret,
    )
    await db.commit()
    assert not key.all_tools
    perms = (await db.scalars(select(ApiKeyToolPermission).where(ApiKeyToolPermission.api_key_id == key.id))).all()
    assert sorted((p.can_read, p.can_write) for p in perms) == [(True, False), (True, True)]
    [summary] = await list_keys(db, org_id=server.org_id)
    assert summary.tools == {"time__get_current_time": "r", "time__set_timezone": "rw"}
    assert summary.state == "active"
    assert summary.user == "alice@example.com"
    assert key.expires_at is not None
    expires = key.expires_at if key.expires_at.tzinfo else key.expires_at.replace(tzinfo=UTC)
    assert timedelta(days=29, hours=23) < expires - utcnow() <= timedelta(days=30)


@pytest.mark.parametrize(
    ("allow", "reason"),
    [
        ([("nope", "rw")], "server 's' has no tool named 'nope'"),
        ([("get_current_time", "r")], "no tool named 'get_current_time'"),
        (
            [("time__set_timezone", "r")],
            "tool time__set_timezone is not read-only; use time__set_timezone:rw",
        ),
        ([("time__convert_time", "x")], "must be r or rw"),
        ([("time__convert_time", "r"), ("time__convert_time", "rw")], "listed twice"),
    ],
)
async def test_bad_allow_lists_are_refused_and_nothing_is_stored(
    db: AsyncSession, server: Server, user: User, secret: bytes, allow: list[tuple[str, str]], reason: str
) -> None:
    with pytest.raises(InvalidInput, match=reason):
        await create_key(db, server=server, user=user, name="", allow=allow, expires_in=None, secret=secret)
    assert (await db.scalar(select(ApiKey.id))) is None


async def test_only_members_of_the_servers_org_get_keys(
    db: AsyncSession, server: Server, user: User, secret: bytes
) -> None:
    personal = await db.scalar(
        select(Organization).where(Organization.is_personal.is_(True), Organization.name == user.email)
    )
    assert personal is not None
    other = await create_server(db, org_id=personal.id, name="mine", upstream_slugs=[], tools=None, plain_names=False)
    stranger = await create_user(db, email="mallory@example.com", password=None, admin=False)
    with pytest.raises(InvalidInput, match=r"mallory@example\.com is not a member"):
        await create_key(db, server=other, user=stranger, name="", allow=None, expires_in=None, secret=secret)
    assert (await get_org(db, slug="default")).id == server.org_id


async def test_revoke_sets_the_time_bumps_the_revision_and_refuses_twice(
    db: AsyncSession, server: Server, user: User, secret: bytes
) -> None:
    key, plain = await create_key(db, server=server, user=user, name="", allow=None, expires_in=None, secret=secret)
    await db.commit()
    revoked = await revoke_key(db, prefix=key.prefix, org_id=server.org_id)
    await db.commit()
    assert revoked.revoked_at is not None
    assert revoked.revision == 2
    assert key_state(revoked) == "revoked"
    with pytest.raises(Conflict, match=f"key {key.prefix} is already revoked"):
        await revoke_key(db, prefix=plain)
    with pytest.raises(NotFound, match="no key with prefix 'pb_nothere'"):
        await revoke_key(db, prefix="pb_nothere")


async def test_expired_keys_show_as_expired(db: AsyncSession, server: Server, user: User, secret: bytes) -> None:
    key, _ = await create_key(
        db, server=server, user=user, name="", allow=None, expires_in=timedelta(seconds=5), secret=secret
    )
    assert key_state(key) == "active"
    assert key_state(key, now=utcnow() + timedelta(seconds=6)) == "expired"
    with pytest.raises(InvalidInput, match="expire in the future"):
        await create_key(db, server=server, user=user, name="", allow=None, expires_in=timedelta(0), secret=secret)


async def test_list_keys_filters_by_server(db: AsyncSession, server: Server, user: User, secret: bytes) -> None:
    other = await create_server(
        db, org_id=server.org_id, name="other", upstream_slugs=["time"], tools=None, plain_names=False
    )
    await create_key(db, server=server, user=user, name="a", allow=None, expires_in=None, secret=secret)
    await create_key(db, server=other, user=user, name="b", allow=None, expires_in=None, secret=secret)
    assert {k.key.name for k in await list_keys(db, org_id=server.org_id)} == {"a", "b"}
    assert [k.key.name for k in await list_keys(db, org_id=server.org_id, server=other)] == ["b"]
