"""The PostgreSQL change watcher: every request sees the commits before it, with reads shared under load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from patchbay.store.changes import PostgresWatcher

pytestmark = pytest.mark.anyio


@pytest.fixture
async def watcher(engine: AsyncEngine) -> AsyncIterator[PostgresWatcher]:
    if engine.dialect.name != "postgresql":
        pytest.skip("the PostgreSQL watcher needs PostgreSQL (PATCHBAY_TEST_DATABASE)")
    found = PostgresWatcher(engine)
    await found.start()
    try:
        yield found
    finally:
        await found.aclose()


async def _bump(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE change_counter SET value = value + 1 WHERE id = 1"))


def _count_reads(watcher: PostgresWatcher) -> list[int]:
    reads = [0]
    read_once = watcher._read_once

    async def counted() -> Any:
        reads[0] += 1
        return await read_once()

    watcher._read_once = counted  # type: ignore[method-assign]
    return reads


async def test_a_commit_before_a_request_is_seen_by_it(engine: AsyncEngine, watcher: PostgresWatcher) -> None:
    seen = await watcher.confirmed_generation()
    for _ in range(20):
        await _bump(engine)  # committed; its NOTIFY may not have arrived yet
        now = await watcher.confirmed_generation()
        assert now != seen
        seen = now


async def test_concurrent_requests_share_reads_and_each_sees_what_committed_before_it(
    engine: AsyncEngine, watcher: PostgresWatcher
) -> None:
    reads = _count_reads(watcher)
    before = await watcher.confirmed_generation()
    reads[0] = 0
    early = [asyncio.ensure_future(watcher.confirmed_generation()) for _ in range(50)]
    await asyncio.sleep(0)  # the first read is on its way
    await _bump(engine)
    late = [asyncio.ensure_future(watcher.confirmed_generation()) for _ in range(50)]
    await asyncio.gather(*early)
    assert all(generation != before for generation in await asyncio.gather(*late))
    assert reads[0] < 20  # 100 requests, a few reads


async def test_a_dropped_reader_connection_is_replaced_without_an_error(
    engine: AsyncEngine, watcher: PostgresWatcher
) -> None:
    seen = await watcher.confirmed_generation()
    kept = watcher._reader_conn
    assert kept is not None
    raw = await kept.get_raw_connection()
    pid = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
    async with engine.connect() as other:
        assert await other.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}) is True
    await _bump(engine)
    assert await watcher.confirmed_generation() != seen
    assert watcher._reader_conn is not kept


async def test_a_request_waiting_for_a_read_can_be_cancelled(engine: AsyncEngine, watcher: PostgresWatcher) -> None:
    seen = await watcher.confirmed_generation()
    waiting = asyncio.ensure_future(watcher.confirmed_generation())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await _bump(engine)
    # The reader went on without the cancelled request, and still serves the next one.
    assert await asyncio.wait_for(watcher.confirmed_generation(), 10) != seen


async def test_a_failed_read_is_a_database_error_for_its_requests_and_the_next_read_recovers(
    engine: AsyncEngine, watcher: PostgresWatcher
) -> None:
    seen = await watcher.confirmed_generation()
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE change_counter RENAME TO change_counter_away"))
    try:
        with pytest.raises(DBAPIError) as failed:  # what the MCP endpoint answers with 503
            await watcher.confirmed_generation()
        assert not failed.value.connection_invalidated
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE change_counter_away RENAME TO change_counter"))
    await _bump(engine)
    assert await watcher.confirmed_generation() != seen


async def test_on_another_database_the_counter_is_read_through_sqlalchemy(engine: AsyncEngine) -> None:
    if engine.dialect.driver == "asyncpg":
        pytest.skip("covers the drivers other than asyncpg")
    watcher = PostgresWatcher(engine)  # not started: blind, but every read still counts
    try:
        await watcher.confirmed_generation()
        seen = watcher._last_counter
        await _bump(engine)
        await watcher.confirmed_generation()
        assert watcher._last_counter == seen + 1
    finally:
        await watcher.aclose()
