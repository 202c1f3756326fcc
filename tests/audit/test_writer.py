"""The audit writer against a real database: nothing submitted is lost, nothing is stored twice."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from patchbay.audit import AuditEvent, AuditWriter
from patchbay.audit.events import FIELD_NAMES, fresh
from patchbay.audit.writer import _compiled_insert, _CompiledInsert
from patchbay.store.models import AuditRecord, new_id

pytestmark = pytest.mark.anyio

WAIT = 10.0


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AuditRecord]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(AuditRecord).order_by(AuditRecord.id)))


async def count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(AuditRecord))) or 0


def events(n: int, *, org_id: str | None = None) -> list[AuditEvent]:
    return [fresh(tool_name=f"tool-{i}", org_id=org_id) for i in range(n)]


def as_utc(moment: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without a zone; they were written in UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


# --- the event -------------------------------------------------------------------------------


def test_event_has_exactly_the_audit_record_columns() -> None:
    assert AuditEvent._fields == tuple(AuditRecord.__table__.columns.keys())


def test_each_event_gets_its_own_time_ordered_id_and_a_utc_timestamp() -> None:
    first, second = fresh(), fresh()
    assert first.id != second.id
    assert first.id[:12] <= second.id[:12]
    assert first.created_at.tzinfo is not None


# --- writing ---------------------------------------------------------------------------------


async def test_every_submitted_event_is_written_once_after_flush(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    submitted = events(1234, org_id="org-1")
    async with AuditWriter(sessionmaker, batch_size=500) as writer:
        for event in submitted:
            assert writer.submit_nowait(event)
        with anyio.fail_after(WAIT):
            await writer.flush()
        assert writer.depth == 0
        assert writer.written == 1234
        rows = await stored(sessionmaker)
    assert sorted(row.id for row in rows) == sorted(event.id for event in submitted)
    assert {row.tool_name for row in rows} == {f"tool-{i}" for i in range(1234)}


async def test_a_batch_larger_than_one_statement_can_bind_is_written_whole(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    # On SQLite a batch goes out as multi-row statements of at most `rows_per_statement` rows
    # (the bound-parameter limit), the last one padded with copies of its last row: every
    # record must come out whole, and once.
    per_statement = _compiled_insert(sqlite_dialect.dialect()).rows_per_statement
    assert per_statement > 1
    submitted = events(per_statement * 2 + 3)
    async with AuditWriter(sessionmaker, batch_size=len(submitted), max_queue=len(submitted)) as writer:
        for event in submitted:
            assert writer.submit_nowait(event)
        with anyio.fail_after(WAIT):
            await writer.flush()
        assert writer.written == len(submitted)
    assert [row.id for row in await stored(sessionmaker)] == sorted(event.id for event in submitted)


async def test_an_unhurried_batch_binds_no_padding_rows(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's statements are padded to a power of two rows; a batch nobody waits for takes a
    # power of two and leaves the rest queued, so every row bound is a record (100 = 64 + 32 + 4).
    bound: list[int] = []
    statements = _CompiledInsert.statements

    def counted(self: _CompiledInsert, batch: Any) -> Iterator[tuple[str, Any]]:
        for sql, parameters in statements(self, batch):
            many = self.rows_per_statement == 0
            bound.append(len(parameters) if many else len(parameters) // len(FIELD_NAMES))
            yield sql, parameters

    monkeypatch.setattr(_CompiledInsert, "statements", counted)
    async with AuditWriter(sessionmaker, flush_interval=0.02) as writer:
        for submitted in events(100):
            assert writer.submit_nowait(submitted)
        with anyio.fail_after(WAIT):
            while writer.written < 100:  # noqa: ASYNC110 (no flush: a flush takes everything at once)
                await anyio.sleep(0.01)
    assert sum(bound) == 100
    if engine.dialect.name == "sqlite":
        assert bound == [64, 32, 4]
    assert await count(sessionmaker) == 100


def test_batches_of_any_size_share_a_few_prepared_statements() -> None:
    # The driver keeps every distinct statement prepared (megabytes for a large batch): batch
    # sizes 1-500 must map to a handful of statements, not to one each.
    insert = _compiled_insert(sqlite_dialect.dialect())
    texts = {sql for n in range(1, 501) for sql, _ in insert.statements(events(n))}
    assert len(texts) <= 10
    for n in (1, 3, 64):
        [(sql, parameters)] = list(insert.statements(events(n)))
        assert sql.count("(?") * len(FIELD_NAMES) == len(parameters)
    # A larger batch is several statements of 64 rows (each ~0.4 ms on the event loop), the last padded.
    assert [len(p) // len(FIELD_NAMES) for _, p in insert.statements(events(500))] == [64] * 8


def test_a_batch_is_encoded_a_statement_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # On the event loop, encoding 512 rows in one go held the loop for ~0.5 ms before the first
    # statement; each statement's rows are encoded just before it runs.
    insert = _compiled_insert(sqlite_dialect.dialect())
    encoded: list[int] = []
    encode = _CompiledInsert.encode

    def counted(self: _CompiledInsert, batch: Any) -> list[tuple[Any, ...]]:
        encoded.append(len(batch))
        return encode(self, batch)

    monkeypatch.setattr(_CompiledInsert, "encode", counted)
    statements = insert.statements(events(200))
    next(statements)
    assert encoded == [64]
    assert [len(p) // len(FIELD_NAMES) for _, p in statements] == [64, 64, 8]
    assert encoded == [64, 64, 64, 8]


async def test_a_written_record_keeps_every_field(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    now = datetime.now(UTC).replace(microsecond=123000)
    event = AuditEvent(
        id=new_id(),
        created_at=now,
        org_id="o" * 32,
        server_id="s" * 32,
        api_key_id="k" * 32,
        key_prefix="pb_abc123",
        user_id="u" * 32,
        auth_method="api_key",
        channel="api",
        transport="streamable_http",
        method="tools/call",
        tool_name="search",
        tool_id="t" * 32,
        http_status=502,
        error_code=-32000,
        status="error",
        duration_ms=12.5,
        bytes_in=321,
        bytes_out=4567,
        user_agent="test-agent/1.0",
        request_id="req-1",
        event="key.created",
        payload_key="logs/2025/01/02/o/s/x.json.gz",
        payload_stored_at=now + timedelta(seconds=1),
    )
    async with AuditWriter(sessionmaker) as writer:
        await writer.submit(event)
        with anyio.fail_after(WAIT):
            await writer.flush()
    [row] = await stored(sessionmaker)
    for name in event.as_row():
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = as_utc(value)
        assert value == getattr(event, name), name


async def test_defaults_of_an_event_are_stored(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with AuditWriter(sessionmaker) as writer:
        await writer.submit(fresh())
        with anyio.fail_after(WAIT):
            await writer.flush()
    [row] = await stored(sessionmaker)
    assert (row.channel, row.status, row.http_status, row.bytes_in, row.org_id) == ("mcp", "ok", 200, 0, None)


async def test_flush_does_not_wait_for_the_batching_interval(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with AuditWriter(sessionmaker, flush_interval=3600) as writer:
        for event in events(3):
            await writer.submit(event)
        with anyio.fail_after(WAIT):
            await writer.flush()
        assert await count(sessionmaker) == 3


async def test_the_same_event_submitted_twice_is_stored_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    event = fresh(tool_name="twice")
    async with AuditWriter(sessionmaker) as writer:
        await writer.submit(event)
        with anyio.fail_after(WAIT):
            await writer.flush()
        await writer.submit(event)
        with anyio.fail_after(WAIT):
            await writer.flush()
    assert [row.id for row in await stored(sessionmaker)] == [event.id]


# --- backpressure ----------------------------------------------------------------------------


async def test_submit_nowait_refuses_an_event_when_the_queue_is_full(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    writer = AuditWriter(sessionmaker, max_queue=3)
    assert [writer.submit_nowait(event) for event in events(4)] == [True, True, True, False]
    assert writer.depth == 3
    async with writer:
        with anyio.fail_after(WAIT):
            await writer.flush()
    assert await count(sessionmaker) == 3


async def test_submit_waits_for_room_instead_of_dropping(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    writer = AuditWriter(sessionmaker, max_queue=2)
    first, second, third = events(3)
    assert writer.submit_nowait(first)
    assert writer.submit_nowait(second)
    done = anyio.Event()

    async def submit_third() -> None:
        await writer.submit(third)
        done.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit_third)
        await anyio.wait_all_tasks_blocked()
        assert not done.is_set()
        await writer.start()
        with anyio.fail_after(WAIT):
            await done.wait()
    with anyio.fail_after(WAIT):
        await writer.flush()
    await writer.aclose()
    assert {row.id for row in await stored(sessionmaker)} == {first.id, second.id, third.id}


async def test_producers_faster_than_the_writer_lose_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    deepest = 0
    async with AuditWriter(sessionmaker, max_queue=5, batch_size=3) as writer:

        async def produce(name: str) -> None:
            nonlocal deepest
            for event in events(50, org_id=name):
                await writer.submit(event)
                deepest = max(deepest, writer.depth)

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for index in range(4):
                    tg.start_soon(produce, f"org-{index}")
            await writer.flush()
    assert await count(sessionmaker) == 200
    assert deepest <= 5 + 3  # the queue plus the batch being written


# --- shutdown --------------------------------------------------------------------------------


async def test_aclose_writes_everything_still_queued(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    writer = AuditWriter(sessionmaker, batch_size=10, flush_interval=3600)
    await writer.start()
    for event in events(25):
        await writer.submit(event)
    with anyio.fail_after(WAIT):
        await writer.aclose()
    assert await count(sessionmaker) == 25
    assert writer.depth == 0


async def test_a_closed_writer_refuses_events(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with AuditWriter(sessionmaker) as writer:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit_nowait(fresh())
    with pytest.raises(RuntimeError, match="closed"):
        await writer.submit(fresh())


# --- failures --------------------------------------------------------------------------------


async def rename_audit_table(engine: AsyncEngine, old: str, new: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))


async def test_a_failed_write_is_retried_until_the_database_takes_it(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    submitted = events(3)
    async with AuditWriter(sessionmaker, retry_initial=0.01, retry_max=0.1) as writer:
        # The table going away stands in for a database that is briefly unreachable.
        await rename_audit_table(engine, "audit_records", "audit_records_away")
        try:
            for event in submitted:
                await writer.submit(event)
            with anyio.fail_after(WAIT):
                # Nothing signals a failed attempt except the counter, so poll it within the bound.
                while writer.failed_batches < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert writer.written == 0
        finally:
            await rename_audit_table(engine, "audit_records_away", "audit_records")
        with anyio.fail_after(WAIT):
            await writer.flush()
        assert writer.written == 3
    assert {row.id for row in await stored(sessionmaker)} == {event.id for event in submitted}


async def test_a_kept_connection_that_died_while_idle_is_replaced_without_an_error_or_a_wait(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    # A backoff of 30 s would outlast the bound below: the batch must go through on a fresh
    # connection at once, as after a restarted server or a proxy's idle timeout.
    async with AuditWriter(sessionmaker, retry_initial=30.0, retry_max=30.0) as writer:
        first, second = events(2)
        await writer.submit(first)
        with anyio.fail_after(WAIT):
            await writer.flush()
        await drop_writer_connection(writer, engine)
        await writer.submit(second)
        with anyio.fail_after(5.0):
            await writer.flush()
        assert writer.written == 2
        assert writer.failed_batches == 1
    assert {row.id for row in await stored(sessionmaker)} == {first.id, second.id}
    assert not [r for r in caplog.records if r.name == "patchbay.audit.writer" and r.levelno >= logging.WARNING]


async def drop_writer_connection(writer: AuditWriter, engine: AsyncEngine) -> None:
    """End the writer's kept connection from outside, as a server or a proxy would."""
    if writer._sqlite is not None:  # a SQLite file: the writer's own connection, closed under it
        own = writer._sqlite._conn
        assert own is not None
        own.close()
        return
    kept = writer._conn
    assert kept is not None
    raw = await kept.get_raw_connection()
    driver: Any = raw.driver_connection
    if engine.dialect.name == "postgresql":
        async with engine.connect() as other:
            ended = await other.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": driver.get_server_pid()})
        assert ended is True
    else:
        await driver.close()  # aiosqlite: the connection's thread stops; its next use fails


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"channel": None}, id="constraint-violation"),
        pytest.param({"duration_ms": "slow"}, id="value-of-the-wrong-type"),
    ],
)
async def test_an_invalid_record_is_dropped_without_holding_back_the_others(
    sessionmaker: async_sessionmaker[AsyncSession], bad: dict[str, Any]
) -> None:
    good = events(6)
    bad_event = fresh(**bad)
    async with AuditWriter(sessionmaker, flush_interval=3600) as writer:
        for event in [*good[:3], bad_event, *good[3:]]:
            await writer.submit(event)
        with anyio.fail_after(WAIT):
            await writer.flush()
        assert (writer.written, writer.rejected, writer.depth) == (6, 1, 0)
    assert {row.id for row in await stored(sessionmaker)} == {event.id for event in good}


async def test_a_cancelled_aclose_stops_the_writer_instead_of_waiting(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    writer = AuditWriter(sessionmaker, retry_initial=0.01, retry_max=0.1)
    await writer.start()
    await rename_audit_table(engine, "audit_records", "audit_records_away")
    try:
        await writer.submit(fresh())
        with anyio.CancelScope() as scope:
            scope.cancel()
            await writer.aclose()
    finally:
        await rename_audit_table(engine, "audit_records_away", "audit_records")
    assert writer.depth == 1
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit_nowait(fresh())


def test_datetimes_reach_sqlite_in_the_text_form_sqlalchemy_writes() -> None:
    dialect = sqlite_dialect.dialect()
    column = AuditRecord.__table__.c["created_at"]
    theirs = column.type._cached_bind_processor(dialect)
    assert theirs is not None
    compiled = _compiled_insert(dialect)
    [process] = [p for at, p in compiled._processors if FIELD_NAMES[at] == "created_at"]
    assert process is not theirs  # the fast form is in use
    moments = [
        datetime(2026, 11, 23, 20, 15, 55, 123456, tzinfo=UTC),
        datetime(2026, 11, 23, 20, 15, 55, 999999, tzinfo=UTC),  # the same second: its text is reused
        datetime(2026, 12, 23, 20, 15, 55, 123456, tzinfo=UTC),  # only the month differs
        datetime(2025, 12, 23, 20, 15, 55, 123456, tzinfo=UTC),  # only the year differs
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still written as .000000
        datetime(999, 12, 31, 23, 59, 59, 1),  # naive, a three-digit year
        datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        date(2026, 6, 1),
        None,
    ]
    for moment in moments:
        assert process(moment) == theirs(moment)
