from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from patchbay.auth.keys import hash_key
from patchbay.auth.principal import Principal
from patchbay.auth.resolver import KeyResolver
from patchbay.policy.credentials import OWN, choose_credential
from patchbay.store import migrate
from patchbay.store.changes import Unchanging
from patchbay.store.db import make_engine, make_sessionmaker
from patchbay.store.models import Base

pytestmark = pytest.mark.anyio


async def test_migrations_create_every_model_table(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


async def test_models_and_migrations_agree(engine: AsyncEngine) -> None:
    """A model change without its migration shows up here as a difference."""

    def diff(sync_conn: object) -> list[object]:
        context = MigrationContext.configure(sync_conn)  # type: ignore[arg-type]
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []


def test_upgrading_from_the_first_migration_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0001")
    sync = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with sync.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO organizations (id, name, slug, is_personal, created_at, updated_at) "
                "VALUES ('o1', 'Old', 'old', 0, '2026-01-01', '2026-01-01')"
            )
        )
    migrate.upgrade(url)
    with sync.connect() as conn:
        assert conn.execute(text("SELECT slug FROM organizations")).scalar_one() == "old"
        assert conn.execute(text("SELECT value FROM change_counter WHERE id = 1")).scalar_one() == 0
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == migrate.current_heads()[0]
    sync.dispose()


def test_keys_from_before_per_key_credentials_keep_working_with_the_default_choice(tmp_path: Path) -> None:
    """Upgrading across 0007 leaves every existing key personal, with no choice: own values over the org's."""
    secret = b"s" * 32
    raw = "pb_" + "k" * 43
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0006")
    sync = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    stamp = "'2026-01-01 00:00:00'"
    with sync.begin() as conn:
        for statement in (
            "INSERT INTO organizations (id, name, slug, is_personal, created_at, updated_at) "
            f"VALUES ('o1', 'Old', 'old', 0, {stamp}, {stamp})",
            "INSERT INTO users (id, email, name, is_active, is_admin, session_epoch, created_at, updated_at) "
            f"VALUES ('u1', 'a@example.com', '', 1, 0, 0, {stamp}, {stamp})",
            "INSERT INTO servers (id, org_id, name, slug, description, status, plain_names, revision, "
            "new_tools, compact, capture_payloads, created_at, updated_at) "
            f"VALUES ('s1', 'o1', 'main', 'main', '', 'running', 0, 1, 'disabled', 0, 1, {stamp}, {stamp})",
            "INSERT INTO api_keys (id, org_id, server_id, user_id, name, prefix, secret_hash, scopes, all_tools, "
            "revision, created_at, updated_at) "
            f"VALUES ('k1', 'o1', 's1', 'u1', 'old', '{raw[:12]}', '{hash_key(raw, secret)}', '[]', 1, 1, "
            f"{stamp}, {stamp})",
        ):
            conn.execute(text(statement))
    sync.dispose()
    migrate.upgrade(url)

    async def resolve() -> Principal:
        engine = make_engine(url)
        try:
            return await KeyResolver(make_sessionmaker(engine), secret, Unchanging()).resolve(raw)
        finally:
            await engine.dispose()

    principal = asyncio.run(resolve())
    assert (principal.key_id, principal.shared, dict(principal.credentials)) == ("k1", False, {})
    assert choose_credential(principal, "any-template") == OWN


async def test_none_is_stored_as_null_on_sqlite(tmp_path: Path) -> None:
    """make_engine gives sqlite3 an adapter for None (decision 0018): it must still bind SQL NULL."""
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'nulls.db'}")
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (a TEXT, b INTEGER)")
            await conn.exec_driver_sql("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)", ("x", None, None, 2))
            count = (await conn.exec_driver_sql("SELECT count(*) FROM t WHERE a IS NULL OR b IS NULL")).scalar()
            kinds = (await conn.exec_driver_sql("SELECT typeof(a) || typeof(b) FROM t ORDER BY rowid")).scalars()
            assert count == 2
            assert list(kinds) == ["textnull", "nullinteger"]
    finally:
        await engine.dispose()
