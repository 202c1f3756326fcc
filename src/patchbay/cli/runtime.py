"""What every command shares: settings, a migrated database, the server secret, one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from patchbay.errors import InvalidInput
from patchbay.services.orgs import get_org
from patchbay.settings import Settings
from patchbay.store import migrate
from patchbay.store.db import make_engine, make_sessionmaker
from patchbay.store.models import Organization

T = TypeVar("T")


@dataclass(frozen=True)
class CliState:
    """The root options, handed to every command through the click context."""

    data_dir: Path | None = None
    org: str = "default"


def state_of(ctx: typer.Context) -> CliState:
    """The root options of this invocation (defaults when a command runs alone)."""
    found = ctx.find_object(CliState)
    return found if found is not None else CliState()


def load_settings(state: CliState, **overrides: Any) -> Settings:
    """Settings from the environment, with command-line values on top."""
    values = {key: value for key, value in overrides.items() if value is not None}
    if state.data_dir is not None:
        values.setdefault("home", state.data_dir)
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        raise InvalidInput(f"setting {where}: {first['msg']}") from exc


@dataclass(frozen=True)
class Env:
    """A command's view of the installation: settings, secret, sessions, the org it acts in."""

    settings: Settings
    secret: bytes
    sessionmaker: async_sessionmaker[AsyncSession]
    org_slug: str
    engine: AsyncEngine | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session committed when the block ends without an error."""
        async with self.sessionmaker() as session:
            yield session
            await session.commit()

    async def org(self, session: AsyncSession) -> Organization:
        return await get_org(session, slug=self.org_slug)


def prepare(settings: Settings) -> str:
    """Bring the database to the current schema (outside any event loop); returns its URL."""
    url = settings.effective_database_url
    migrate.upgrade(url)
    return url


def run(ctx: typer.Context, work: Callable[[Env], Awaitable[T]]) -> T:
    """Migrate, then run ``work`` in one event loop with a fresh engine."""
    state = state_of(ctx)
    settings = load_settings(state)
    url = prepare(settings)
    try:
        secret = settings.resolve_secret_key()
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc

    async def main() -> T:
        engine = make_engine(url)
        try:
            env = Env(
                settings=settings,
                secret=secret,
                sessionmaker=make_sessionmaker(engine),
                org_slug=state.org,
                engine=engine,
            )
            return await work(env)
        finally:
            await engine.dispose()

    return asyncio.run(main())
