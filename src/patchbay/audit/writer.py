"""The audit writer: a bounded queue drained by one background task, a batch per INSERT.

Requests hand over an ``AuditEvent`` and move on; the writer batches them, so the database
sees one statement per batch instead of one transaction per call. A failed write is retried
with backoff until it succeeds, so a database that is briefly away costs latency, not
records. Ids are chosen before the first attempt and the INSERT skips ids already present,
so a retry after a commit whose answer was lost cannot store a record twice.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from itertools import chain
from types import TracebackType
from typing import Any, Literal

import anyio
from sqlalchemy import Insert, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from patchbay.audit.events import FIELD_NAMES, AuditEvent
from patchbay.audit.sqlite_loop import ROWS_PER_STATEMENT, LoopSqlite, is_closed_connection, sqlite_file
from patchbay.store.models import AuditRecord

logger = logging.getLogger(__name__)

_TABLE = AuditRecord.metadata.tables[AuditRecord.__tablename__]


# Batches smaller than this are taken whole: their padding costs little, and leaving their last
# records to the next batch would keep them from the audit log for another flush interval.
_ROUND_DOWN_FROM = 32


class Signal:
    """Wakes every task waiting when ``fire`` is called. The event is made on first wait, so
    the writer can be built outside an event loop."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def fire(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self) -> None:
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


class AuditWriter:
    """Batches audit events into ``audit_records``; ``start`` it, ``submit`` to it, ``aclose`` it.

    The worker is a plain asyncio task rather than a member of a task group: ``start`` and
    ``aclose`` happen at different points of an application lifespan, and the database drivers
    below are asyncio-only anyway. ``async with AuditWriter(...)`` calls both.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        max_queue: int = 10_000,
        batch_size: int = 512,
        flush_interval: float = 0.05,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        observe: Callable[[AuditEvent], None] | None = None,
    ) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        self._sessionmaker = sessionmaker
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        # Sees every event as the worker takes it: metrics are counted here, off the request path.
        self._observe = observe

        self._queue: deque[AuditEvent] = deque()
        self._state: Literal["new", "running", "closing", "closed"] = "new"
        self._task: asyncio.Task[None] | None = None
        self._worker_running = False
        self._queued = Signal()  # the worker: events arrived, or a flush or close is asking
        self._room = Signal()  # submitters: the queue has room again
        self._progress = Signal()  # flushers: more events are settled
        self._flushers = 0
        self._conn: AsyncConnection | None = None
        # A SQLite file is written from the loop, on a connection of the writer's own (decision 0020).
        self._sqlite: LoopSqlite | None = None
        # SQLite pads each statement to a power of two rows (``_CompiledInsert.statements``).
        self._pads = False

        self._submitted = 0
        self._settled = 0  # written, or refused by the database as invalid
        self._written = 0
        self._failed_batches = 0
        self._rejected = 0

    # --- metrics ---------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Events accepted and not yet settled: the queue plus the batch being written."""
        return self._submitted - self._settled

    @property
    def written(self) -> int:
        """Records stored so far."""
        return self._written

    @property
    def failed_batches(self) -> int:
        """Write attempts that failed (each was retried or, for invalid rows, split)."""
        return self._failed_batches

    @property
    def rejected(self) -> int:
        """Records the database refused as invalid (say a NOT NULL column left empty); dropped."""
        return self._rejected

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background task that writes batches."""
        if self._state != "new":
            raise RuntimeError(f"AuditWriter cannot start: it is {self._state}")
        self._state = "running"
        self._worker_running = True
        engine = self._sessionmaker.kw.get("bind")
        if isinstance(engine, AsyncEngine):
            self._pads = _compiled_insert(engine.dialect).rows_per_statement > 0
            path = sqlite_file(engine)
            self._sqlite = LoopSqlite(path) if path is not None else None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="patchbay-audit-writer")
        self._task.add_done_callback(_report_crash)

    async def aclose(self) -> None:
        """Write everything still queued, then stop (on SIGTERM). If cancelled, stop at once."""
        if self._state == "closed":
            return
        task, self._task = self._task, None
        if task is None:
            self._mark_closed()
            return
        self._state = "closing"
        self._queued.fire()
        try:
            # Cancelling this wait cancels the worker too: a bounded shutdown beats a full drain.
            await task
        finally:
            if not task.done():
                task.cancel()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({task})
            self._mark_closed()

    async def __aenter__(self) -> AuditWriter:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- submitting ------------------------------------------------------------------------

    def submit_nowait(self, event: AuditEvent) -> bool:
        """Queue ``event``; False when the queue is full."""
        if self._state == "closed":
            raise RuntimeError("AuditWriter is closed")
        if len(self._queue) >= self._max_queue:
            return False
        queue = self._queue
        queue.append(event)
        self._submitted += 1
        # The worker waits for a first event, then lingers until a batch is full (or a flush or
        # close asks): waking it for every event in between cost a task step per request.
        if len(queue) == 1 or len(queue) >= self._batch_size:
            self._queued.fire()
        return True

    async def submit(self, event: AuditEvent) -> None:
        """Queue ``event``, waiting for room when the queue is full rather than dropping it."""
        while not self.submit_nowait(event):
            await self._room.wait()

    async def flush(self) -> None:
        """Wait until every event submitted before this call is written."""
        if self._state not in ("running", "closing"):
            raise RuntimeError(f"AuditWriter cannot flush: it is {self._state}")
        target = self._submitted
        self._flushers += 1
        self._queued.fire()
        try:
            while self._settled < target:
                if not self._worker_running:
                    raise RuntimeError("AuditWriter stopped before these records were written")
                await self._progress.wait()
        finally:
            self._flushers -= 1

    # --- the background task ---------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while await self._wait_for_batch():
                count = self._batch_count()
                batch = [self._queue.popleft() for _ in range(count)]
                self._room.fire()
                if self._observe is not None:
                    self._observe_all(batch)
                await self._write(batch)
                self._settled += count
                self._progress.fire()
        finally:
            self._worker_running = False
            if self._conn is not None:
                conn, self._conn = self._conn, None
                with anyio.CancelScope(shield=True):
                    await _discard(conn)
            if self._sqlite is not None:
                with anyio.CancelScope(shield=True):
                    await self._sqlite.aclose()
            self._progress.fire()
            self._room.fire()

    def _observe_all(self, batch: list[AuditEvent]) -> None:
        assert self._observe is not None
        try:
            for event in batch:
                self._observe(event)
        except Exception:  # a metrics bug must not stop records from being written
            logger.exception("the audit observer failed")

    def _mark_closed(self) -> None:
        self._state = "closed"
        if self.depth:
            logger.error("audit writer stopped with %d records unwritten", self.depth)
        # Nothing will make progress or room any more; wake whoever still waits for it.
        self._progress.fire()
        self._room.fire()

    async def _wait_for_batch(self) -> bool:
        """Wait for events (False once closing with nothing left), then linger for a fuller batch."""
        while not self._queue:
            if self._state == "closing":
                return False
            await self._queued.wait()
        if not self._in_a_hurry():
            with anyio.move_on_after(self._flush_interval):
                while not self._in_a_hurry():
                    await self._queued.wait()
        return True

    def _batch_count(self) -> int:
        """How many queued events the next batch takes.

        Where statements are padded to a power of two rows, a batch nobody waits for takes the
        largest power of two queued and leaves the rest to the next one: padding rows are bound
        and checked like real ones (400 rows padded to 512 cost 7.0 µs a row on SQLite, 512 rows
        5.75 µs; decision 0019). A flush, a close or a full queue takes everything it can.
        """
        count = min(self._batch_size, len(self._queue))
        if not self._pads or count < _ROUND_DOWN_FROM or self._in_a_hurry():
            return count
        return 1 << (count.bit_length() - 1)

    def _in_a_hurry(self) -> bool:
        return len(self._queue) >= self._batch_size or self._flushers > 0 or self._state == "closing"

    async def _write(self, rows: list[AuditEvent]) -> None:
        """Store ``rows``, retrying until it works; rows the database calls invalid are dropped."""
        delay = self._retry_initial
        while True:
            kept = self._conn is not None or (self._sqlite is not None and self._sqlite.connected)
            try:
                await self._insert(rows)
            except Exception as exc:  # the writer's top level: a failed write must not end the task
                self._failed_batches += 1
                if kept and _connection_lost(exc):
                    # The kept connection died while idle (a restarted server, an idle timeout, a
                    # proxy): nothing is wrong with the database, so a fresh one takes the batch now.
                    logger.info("the audit writer's database connection was closed; reconnecting")
                    continue
                if _rows_are_at_fault(exc):
                    if len(rows) == 1:
                        self._rejected += 1
                        logger.exception("the database refused audit record %s; dropping it", rows[0].id)
                        return
                    logger.warning("the database refused a batch of %d audit records; splitting it", len(rows))
                    break
                logger.exception("writing %d audit records failed; retrying in %.2fs", len(rows), delay)
            else:
                self._written += len(rows)
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, self._retry_max)
        # Halving finds the invalid rows in O(log n) statements while the valid ones are written.
        middle = len(rows) // 2
        await self._write(rows[:middle])
        await self._write(rows[middle:])

    async def _insert(self, events: Sequence[AuditEvent]) -> None:
        # One INSERT executed with the whole batch of parameter sets. Measured against a literal
        # multi-row VALUES (which SQLAlchemy compiles afresh for every batch): 10-20x faster on
        # SQLite and PostgreSQL alike. The statement is compiled once per dialect and the rows go
        # to the driver as tuples: SQLAlchemy's per-row parameter processing cost more CPU than
        # the database's own work (bench/README.md, decision 0008).
        engine = self._sessionmaker.kw.get("bind")
        if self._sqlite is not None:
            assert isinstance(engine, AsyncEngine)
            await self._sqlite.insert(_compiled_insert(engine.dialect).statements(events), len(events))
            return
        if not isinstance(engine, AsyncEngine):
            async with self._sessionmaker() as session, session.begin():
                bound = await session.connection()
                compiled = _compiled_insert(bound.dialect)
                await bound.exec_driver_sql(compiled.sql, compiled.encode(events))  # one transaction
            return
        # One connection kept for the writer: a session, a pool checkout and the pool's
        # reset-on-return (a rollback) per batch cost the event loop about as much as the rows.
        conn = self._conn
        insert = _compiled_insert(engine.dialect)
        fresh = conn is None
        if conn is None:
            conn = await engine.connect()
            self._conn = conn
        try:
            if fresh and insert.rows_per_statement:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            async with conn.begin():
                for sql, parameters in insert.statements(events):
                    await conn.exec_driver_sql(sql, parameters)
        except BaseException:
            self._conn = None
            with anyio.CancelScope(shield=True):
                await _discard(conn)
            raise


class _BadValue(Exception):
    """A field value the column type cannot take (found before the database sees the batch)."""


class _CompiledInsert:
    """The batch INSERT for one dialect: its SQL text and how to turn events into driver rows."""

    def __init__(self, dialect: Dialect) -> None:
        compiled = _insert_ignoring_duplicates(dialect).compile(dialect=dialect, column_keys=list(FIELD_NAMES))
        self.sql = compiled.string
        order = compiled.positiontup or list(FIELD_NAMES)
        if tuple(order) != FIELD_NAMES:  # an event is bound as it is: its fields are the columns, in order
            raise RuntimeError(f"AuditEvent's fields are not in the INSERT's column order: {order}")
        # The dialect's own bind processors (say datetime -> text on SQLite), so values are stored
        # exactly as SQLAlchemy would store them; most columns have none.
        processors: list[tuple[int, Callable[[Any], Any]]] = []
        for position, name in enumerate(order):
            column_type = _TABLE.c[name].type
            process = column_type._cached_bind_processor(dialect)
            if process is None:
                continue
            if getattr(column_type.dialect_impl(dialect), "_storage_format", None) == _SQLITE_DATETIME:
                processors.append((position, _sqlite_datetime(process)))
            else:
                processors.append((position, process))
        self._processors = processors
        # SQLite: multi-row statements of ``ROWS_PER_STATEMENT`` rows. ``executemany`` steps each
        # row separately, which on a worker thread meant a wait for the GIL per row (decision
        # 0017); the writer now runs the statements on the event loop, a short one at a time
        # (decision 0020).
        self.rows_per_statement = _sqlite_rows_per_statement(len(order)) if dialect.name == "sqlite" else 0
        if self.rows_per_statement:
            start = self.sql.index(" VALUES (") + len(" VALUES ")
            end = self.sql.index(")", start) + 1
            self._head, self._row, self._tail = self.sql[:start], self.sql[start:end], self.sql[end:]
        self._multi_row: dict[int, str] = {}

    def statements(self, events: Sequence[AuditEvent]) -> Iterator[tuple[str, Any]]:
        """The SQL and parameters that store ``events``: one ``executemany``, or multi-row chunks.

        A chunk is padded to a power of two with copies of its last row (the INSERT skips ids
        already present, so a copy stores nothing): the driver keeps each distinct statement
        prepared, ~2.5 KB per row, and one per batch size seen grew the process by 140 MB.
        Each chunk's rows are encoded just before it is yielded: on the event loop, a batch's
        encoding then comes in statement-sized pieces too (decision 0020).
        """
        size = self.rows_per_statement
        if not size:
            yield self.sql, self.encode(events)
            return
        for first in range(0, len(events), size):
            chunk = self.encode(events[first : first + size])
            padded = 1 << (len(chunk) - 1).bit_length()
            chunk.extend([chunk[-1]] * (padded - len(chunk)))
            sql = self._multi_row.get(padded)
            if sql is None:
                sql = self._multi_row[padded] = self._head + ", ".join([self._row] * padded) + self._tail
            yield sql, tuple(chain.from_iterable(chunk))

    def encode(self, events: Sequence[AuditEvent]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = list(events)  # an event is its row's values, in order
        if not self._processors:
            return rows
        encoded = []
        for row in rows:
            values = list(row)
            for position, process in self._processors:
                value = values[position]
                if value is not None:
                    try:
                        values[position] = process(value)
                    except (TypeError, ValueError) as exc:
                        raise _BadValue(f"{FIELD_NAMES[position]}: {exc}") from exc
            encoded.append(tuple(values))
        return encoded


# SQLAlchemy's default text form of a datetime on SQLite (``sqlite.DATETIME``).
_SQLITE_DATETIME = "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
_SQLITE_SECOND = "%04d-%02d-%02d %02d:%02d:%02d"
_SQLITE_MICROSECOND = ".%06d"


def _sqlite_datetime(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """SQLAlchemy's SQLite datetime processor, formatting a tuple instead of a seven-key dict.

    The same format with positional fields: the same text, for half the cost (the dict and its
    key lookups were most of it; ``isoformat`` was no cheaper, its UTC offset included). A
    batch's records share their second: the text up to it is kept from the previous value,
    which leaves only the microseconds to format (0.38 µs a value instead of 0.75).
    """
    # The previous value's fields up to the second, with their text: one tuple, replaced whole, so
    # writers in two threads (two event loops) never see one's fields with the other's text.
    last: list[tuple[Any, str]] = [(None, "")]

    def fast(value: Any) -> Any:
        if type(value) is datetime:
            fields = (value.year, value.month, value.day, value.hour, value.minute, value.second)
            kept, text = last[0]
            if fields != kept:
                text = _SQLITE_SECOND % fields
                last[0] = (fields, text)
            return text + _SQLITE_MICROSECOND % value.microsecond
        return process(value)

    return fast


def _sqlite_rows_per_statement(columns: int) -> int:
    """``ROWS_PER_STATEMENT``, or fewer (a power of two) where SQLite's limit on bound parameters is lower."""
    # The limit was raised from 999 in SQLite 3.32; both connections use the stdlib module's library.
    limit = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
    return min(ROWS_PER_STATEMENT, 1 << ((limit // columns).bit_length() - 1))  # a power of two (``statements``)


_COMPILED: dict[str, _CompiledInsert] = {}


def _compiled_insert(dialect: Dialect) -> _CompiledInsert:
    key = f"{dialect.name}+{dialect.driver}"
    found = _COMPILED.get(key)
    if found is None:
        found = _COMPILED[key] = _CompiledInsert(dialect)
    return found


def _insert_ignoring_duplicates(dialect: Dialect) -> Insert:
    if dialect.name == "postgresql":
        return postgresql.insert(_TABLE).on_conflict_do_nothing(index_elements=["id"])
    if dialect.name == "sqlite":
        # OR ROLLBACK: a row that breaks a constraint other than the id's ends the whole
        # transaction, as the writer treats any failed statement anyway. With the default
        # (ABORT), SQLite keeps a statement journal for every statement after a transaction's
        # first, so it can undo just that one: a third of the audit connection's page writes,
        # spilled to a temporary file per statement (decision 0021).
        return sqlite.insert(_TABLE).prefix_with("OR ROLLBACK").on_conflict_do_nothing(index_elements=["id"])
    return insert(_TABLE)


def _connection_lost(exc: Exception) -> bool:
    """True when the driver says the connection itself is gone (SQLAlchemy's disconnect check)."""
    return (isinstance(exc, DBAPIError) and exc.connection_invalidated) or is_closed_connection(exc)


def _rows_are_at_fault(exc: Exception) -> bool:
    """True when retrying the same rows cannot help: constraint or data errors, bad values."""
    if isinstance(exc, IntegrityError | DataError | _BadValue):
        return True
    # The writer's own SQLite connection raises the driver's errors as they are.
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError | sqlite3.InterfaceError | OverflowError):
        return True
    if isinstance(exc, sqlite3.ProgrammingError) and not is_closed_connection(exc):
        return True  # a value the driver cannot bind
    if isinstance(exc, DBAPIError):
        # asyncpg surfaces most PostgreSQL errors as the generic DBAPIError; the SQLSTATE class
        # tells data exceptions (22) and constraint violations (23) from an unhealthy database.
        sqlstate = getattr(exc.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate[:2] in {"22", "23"}
    # Raised while binding parameters, before the database saw anything.
    return isinstance(exc, StatementError)


async def _discard(conn: AsyncConnection) -> None:
    """Give the writer's connection back; one that failed mid-batch is not reused."""
    try:
        await conn.close()
    except Exception:  # already broken: the pool will replace it
        logger.debug("closing the audit writer's connection failed", exc_info=True)


def _report_crash(task: asyncio.Task[None]) -> None:
    # The worker handles database errors itself; anything else is a bug that must not pass silently.
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("the audit writer stopped on an unexpected error", exc_info=exc)
