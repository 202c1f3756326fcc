"""The key resolver's memo of recent raw keys: it saves the HMAC, and never outlives a change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, tzinfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from patchbay.auth import keys
from patchbay.auth import resolver as resolver_module
from patchbay.auth.resolver import KeyResolver
from patchbay.errors import Unauthenticated
from patchbay.services.keys import create_key, revoke_key
from patchbay.services.servers import create_server
from patchbay.services.users import create_user
from patchbay.store.changes import make_watcher
from patchbay.store.models import Organization
from tests.services.conftest import TIME_TOOLS, make_upstream

pytestmark = pytest.mark.anyio


@pytest.fixture
async def resolver(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], secret: bytes
) -> AsyncIterator[KeyResolver]:
    watcher = make_watcher(engine, engine.url.database if engine.dialect.name == "sqlite" else None)
    await watcher.start()
    try:
        yield KeyResolver(sessionmaker, secret, watcher)
    finally:
        await watcher.aclose()


@pytest.fixture
def hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every raw key the resolver hashes, in order."""
    seen: list[str] = []
    real = keys.hash_key

    def counting(raw: str, secret: bytes) -> str:
        seen.append(raw)
        return real(raw, secret)

    monkeypatch.setattr(resolver_module, "hash_key", counting)
    return seen


async def test_a_key_that_resolved_is_hashed_once_and_a_revoked_one_is_refused_at_once(
    db: AsyncSession, org: Organization, secret: bytes, resolver: KeyResolver, hashes: list[str]
) -> None:
    await make_upstream(db, org=org, secret=secret, name="time", tools=TIME_TOOLS)
    server = await create_server(db, org_id=org.id, name="s", upstream_slugs=["time"], tools=None, plain_names=False)
    user = await create_user(db, email="alice@example.com", password=None, admin=False)
    key, plain = await create_key(db, server=server, user=user, name="ci", allow=None, expires_in=None, secret=secret)
    await db.commit()

    for _ in range(5):
        assert (await resolver.resolve(plain)).key_id == key.id
    assert hashes == [plain]

    await revoke_key(db, prefix=key.prefix)
    await db.commit()
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="revoked"):
            await resolver.resolve(plain)
    assert hashes == [plain, plain]  # the change emptied the memo, and a refused key is not kept


async def test_keys_that_do_not_resolve_are_not_kept(resolver: KeyResolver, hashes: list[str]) -> None:
    unknown = "pb_" + "x" * 43
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="unknown"):
            await resolver.resolve(unknown)
    assert hashes == [unknown] * 3


async def test_a_key_that_expires_is_no_longer_kept(
    db: AsyncSession,
    org: Organization,
    secret: bytes,
    resolver: KeyResolver,
    hashes: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await make_upstream(db, org=org, secret=secret, name="time", tools=TIME_TOOLS)
    server = await create_server(db, org_id=org.id, name="s", upstream_slugs=["time"], tools=None, plain_names=False)
    user = await create_user(db, email="alice@example.com", password=None, admin=False)
    _, plain = await create_key(
        db, server=server, user=user, name="ci", allow=None, expires_in=timedelta(hours=1), secret=secret
    )
    await db.commit()
    await resolver.resolve(plain)
    assert hashes == [plain]

    class TwoHoursLater(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> TwoHoursLater:
            moment = datetime.now(tz) + timedelta(hours=2)
            return cls.fromtimestamp(moment.timestamp(), tz)

    monkeypatch.setattr(resolver_module, "datetime", TwoHoursLater)  # no change to keys: the memo stays
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="expired"):
            await resolver.resolve(plain)
    assert hashes == [plain, plain]  # refused once from the memo, then hashed again
