"""Shared fixtures: a migrated database (SQLite or PostgreSQL per PATCHBAY_TEST_DATABASE) per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from patchbay.store import migrate
from patchbay.store.db import make_engine, make_sessionmaker
from patchbay.store.models import Base

PG_DEFAULT = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _test_database() -> str:
    value = os.environ.get("PATCHBAY_TEST_DATABASE", "sqlite")
    return value


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _pg_migrated() -> str | None:
    """Migrate the PostgreSQL test database once per run (from scratch, so migrations are exercised)."""
    url = _test_database()
    if url == "sqlite":
        return None
    import asyncio

    async def reset() -> None:
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    asyncio.run(reset())
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "patchbay.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
def settings(tmp_path: Path, _pg_migrated: str | None, _sqlite_template: Path) -> Settings:
    """Settings for one test: its own data dir and a freshly migrated, empty database."""
    home = tmp_path / "home"
    home.mkdir()
    if _pg_migrated is None:
        (home / "patchbay.db").write_bytes(_sqlite_template.read_bytes())
        db_url = None
    else:
        db_url = _pg_migrated
        import asyncio

        async def truncate() -> None:
            engine = make_engine(db_url)
            names = ", ".join(t.name for t in Base.metadata.sorted_tables if t.name != "change_counter")
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {names} CASCADE"))
            await engine.dispose()

        asyncio.run(truncate())
    return Settings(
        home=home,
        database_url=db_url,
        secret_key="test-secret-key-0123456789abcdef",
        redis_url=None,
    )


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(settings.effective_database_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session
