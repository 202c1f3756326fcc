"""Bring a database to the current schema and ensure the rows every installation needs."""

from __future__ import annotations

import asyncio

from patchbay.services.orgs import ensure_default_org
from patchbay.settings import Settings
from patchbay.store import migrate
from patchbay.store.db import make_engine, make_sessionmaker


def prepare_database(settings: Settings) -> None:
    """Migrate to head and create the default organization; call outside any event loop."""
    migrate.upgrade(settings.effective_database_url)

    async def seed() -> None:
        engine = make_engine(settings.effective_database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                await ensure_default_org(session)
                await session.commit()
        finally:
            await engine.dispose()

    asyncio.run(seed())
