"""Run the ``patchbay`` command in-process against the test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner, Result

from patchbay.cli import app
from patchbay.settings import Settings
from patchbay.store.db import make_engine, make_sessionmaker

T = TypeVar("T")

# A real upstream: the MCP reference time server, over stdio.
TIME_COMMAND = f"{sys.executable} -m mcp_server_time --local-timezone=UTC"


class Cli(Protocol):
    def __call__(self, *args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Result: ...


def cli_env(settings: Settings) -> dict[str, str | None]:
    return {
        "PATCHBAY_HOME": str(settings.home),
        "PATCHBAY_DATABASE_URL": settings.database_url,
        "PATCHBAY_SECRET_KEY": settings.secret_key,
        "PATCHBAY_ENVIRONMENT": None,
    }


@pytest.fixture
def cli(settings: Settings) -> Cli:
    """``cli("key", "list")`` runs ``patchbay key list`` with the test's data dir and database."""
    runner = CliRunner()
    base = cli_env(settings)

    def invoke(*args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, env=base | (env or {}))

    return invoke


def in_db(settings: Settings, work: Callable[[AsyncSession], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` in a committed session of the test database (tests here are synchronous)."""

    async def main() -> T:
        engine = make_engine(settings.effective_database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(main())


def dump_tables(settings: Settings, tables: Sequence[str]) -> str:
    """Every value of ``tables`` as text, to prove a secret is not among them."""

    async def work(session: AsyncSession) -> str:
        values: list[str] = []
        for table in tables:
            for row in (await session.execute(text(f"SELECT * FROM {table}"))).all():
                values.extend(str(v) for v in row)
        return "\n".join(values)

    return in_db(settings, work)


def one_error_line(result: Result) -> str:
    """The single ``error: ...`` line a failed command must print, with no traceback."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]
