from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from patchbay.store import migrate
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
