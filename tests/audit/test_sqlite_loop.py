"""The audit writer on a SQLite file: batches run on the event loop, never blocking it inside SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import anyio
import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from patchbay.audit import AuditWriter, sqlite_loop
from patchbay.audit.events import fresh
from patchbay.audit.sqlite_loop import ROWS_PER_STATEMENT, sqlite_file
from patchbay.audit.writer import _compiled_insert
from patchbay.store.db import make_engine
from patchbay.store.models import AuditRecord

pytestmark = pytest.mark.anyio

WAIT = 10.0
_OE_ROLLBACK = 1  # SQLite's code for ON CONFLICT ROLLBACK in a halt's p2 (ABORT is 2)


@pytest.fixture
def database_file(engine: AsyncEngine) -> str:
    path = sqlite_file(engine)
    if path is None:
        pytest.skip("the event-loop writer is for a SQLite file (PATCHBAY_TEST_DATABASE=sqlite)")
    return path


async def count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(AuditRecord))) or 0


async def test_only_a_sqlite_file_gets_the_event_loop_writer() -> None:
    in_memory = make_engine("sqlite+aiosqlite://")
    postgres = make_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    on_disk = make_engine("sqlite+aiosqlite:////tmp/some/patchbay.db")
    try:
        assert (sqlite_file(in_memory), sqlite_file(postgres)) == (None, None)
        assert sqlite_file(on_disk) == "/tmp/some/patchbay.db"
    finally:
        for engine in (in_memory, postgres, on_disk):
            await engine.dispose()


async def test_other_tasks_run_between_the_statements_of_a_batch(
    database_file: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # A batch of 8 statements must let the loop turn between them: a request never waits for a
    # whole batch, only for the statement under way.
    turns = 0
    done = False

    async def ticker() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    statements = 8
    async with AuditWriter(sessionmaker, batch_size=ROWS_PER_STATEMENT * statements, flush_interval=3600) as writer:
        for _ in range(ROWS_PER_STATEMENT * statements):
            assert writer.submit_nowait(fresh())
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = turns
        with anyio.fail_after(WAIT):
            await writer.flush()
        during = turns - before
        done = True
        await task
    assert writer.written == ROWS_PER_STATEMENT * statements
    assert during >= statements - 1
    assert await count(sessionmaker) == ROWS_PER_STATEMENT * statements


async def test_a_batch_waits_for_another_writer_without_failing_or_blocking_the_loop(
    database_file: str, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # With SQLite's own busy handler, the writer would sleep on the loop (this test's thread too),
    # so the lock below could never be released: the batch would fail after the timeout.
    other = sqlite3.connect(database_file, isolation_level=None)
    try:
        async with AuditWriter(sessionmaker, flush_interval=0.01) as writer:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock, as the CLI may
            for event in [fresh() for _ in range(5)]:
                await writer.submit(event)
            await asyncio.sleep(0.2)  # the writer tries, and waits on the loop
            assert writer.written == 0
            other.execute("COMMIT")
            with anyio.fail_after(WAIT):
                await writer.flush()
            assert (writer.written, writer.failed_batches) == (5, 0)
            own = writer._sqlite._conn if writer._sqlite is not None else None
            assert own is not None
            assert own.execute("PRAGMA busy_timeout").fetchone() == (0,)  # SQLite itself never sleeps
    finally:
        other.close()
    assert await count(sessionmaker) == 5


async def test_checkpoints_run_in_a_worker_thread_not_on_the_loop(
    database_file: str, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    checkpoint = sqlite_loop._checkpoint

    def recorded(path: str) -> None:
        threads.append(threading.current_thread().name)
        checkpoint(path)

    monkeypatch.setattr(sqlite_loop, "CHECKPOINT_ROWS", 10)
    monkeypatch.setattr(sqlite_loop, "_checkpoint", recorded)
    async with AuditWriter(sessionmaker, flush_interval=3600) as writer:
        for _ in range(3):
            for event in [fresh() for _ in range(10)]:
                await writer.submit(event)
            with anyio.fail_after(WAIT):
                await writer.flush()
            own = writer._sqlite._conn if writer._sqlite is not None else None
            assert own is not None
            # Its own connection never checkpoints (that syncs files): the worker does.
            assert own.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    assert threads
    assert threading.main_thread().name not in threads
    assert await count(sessionmaker) == 30


async def test_no_statement_of_a_batch_needs_a_statement_journal(database_file: str) -> None:
    # A statement that can stop halfway with ABORT needs a statement journal once it is not its
    # transaction's first: SQLite spilled it to a temporary file for most of the writer's
    # statements. A constraint check that ends the whole transaction needs none, and the writer
    # gives up the whole batch on any failure anyway.
    sql, parameters = next(_compiled_insert(sqlite_dialect.dialect()).statements([fresh()]))
    conn = sqlite3.connect(database_file)
    try:
        program = conn.execute("EXPLAIN " + sql, parameters).fetchall()
    finally:
        conn.close()
    # EXPLAIN's columns: addr, opcode, p1, p2, ...; a halt's p2 is its conflict resolution.
    halts = [(row[1], row[3]) for row in program if row[1] in ("Halt", "HaltIfNull") and row[2] != 0]
    assert halts, "the audit table has NOT NULL columns: their checks should be in the program"
    assert {p2 for _opcode, p2 in halts} == {_OE_ROLLBACK}
