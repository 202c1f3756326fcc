"""Knowing, cheaply and at once, that another process changed keys or servers.

Caches on the request path (key → Principal) hold until the database says something
changed. Every revision bump also increments the single ``change_counter`` row and, on
PostgreSQL, sends ``NOTIFY patchbay_changes``, all inside its transaction. On SQLite the
gateway reads the counter on a dedicated connection whenever the WAL index shows that some
transaction committed since it last looked (strict: audit writes do not change it). On
PostgreSQL it LISTENs, and a request that must see every earlier commit shares a read of the
counter with the requests around it; while the LISTEN connection is down, every call reports a
change so nothing stale is ever served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import sqlite3
from typing import Any, Protocol

from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from patchbay.store.models import ChangeCounter

logger = logging.getLogger(__name__)

CHANNEL = "patchbay_changes"
_COUNTER_SQL = "SELECT value FROM change_counter WHERE id = 1"


class ChangeWatcher(Protocol):
    def generation(self) -> int:
        """A number that differs from its previous value whenever the data may have changed."""
        ...

    async def wait(self, generation: int) -> int:
        """Return the generation once it differs from ``generation`` (what live notifications wait on)."""
        ...

    async def confirmed_generation(self) -> int:
        """The generation, with every change committed before this call counted (for key revocation)."""
        ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


class Unchanging:
    """A change watcher for a process that lives for one call: its key cache never outlives it."""

    def generation(self) -> int:
        return 0

    async def confirmed_generation(self) -> int:
        return 0

    async def wait(self, generation: int) -> int:
        raise RuntimeError("a one-call process does not wait for changes")

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def announce_change(session: AsyncSession) -> None:
    """Tell gateways that keys or servers changed (seen when the transaction commits)."""
    await session.execute(update(ChangeCounter).where(ChangeCounter.id == 1).values(value=ChangeCounter.value + 1))
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})


class SqliteWatcher:
    """Reads the change counter, but only after SQLite's WAL index says some transaction committed.

    In WAL mode every commit, by any process, rewrites the header of the shared WAL index (the
    ``-shm`` file: its change counter and last frame, https://www.sqlite.org/walformat.html)
    before the transaction becomes visible. Those 96 bytes are read from a read-only mapping of
    the file, without a system call; the counter query (which takes file locks) runs only when
    the header moved, mostly after this process's own audit batches. The header is read before
    the counter, so a commit between the two reads is seen again on the next call. SQLite only
    truncates the index when no connection has it open, and ours keeps it open for as long as
    the mapping lives. Without a WAL index (another journal mode) every call reads the counter.
    """

    # SQLite has no notifications: waiting polls the counter (a few microseconds a read).
    POLL_SECONDS = 0.05

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._shm: mmap.mmap | None = None
        self._header = b""
        self._value = -1
        self._blind = -1

    async def start(self) -> None:
        self._conn = sqlite3.connect(self._path, check_same_thread=False)
        with contextlib.suppress(sqlite3.Error, OSError):
            mode = self._conn.execute("PRAGMA journal_mode").fetchone()
            if mode is not None and str(mode[0]).lower() == "wal":
                self._read_counter()  # opens the WAL index, and holds it open, for this connection
                fd = os.open(self._path + "-shm", os.O_RDONLY)
                try:
                    if os.fstat(fd).st_size >= _WAL_HEADER_SIZE:
                        self._shm = mmap.mmap(fd, _WAL_HEADER_SIZE, access=mmap.ACCESS_READ)
                finally:
                    os.close(fd)

    def generation(self) -> int:
        if self._conn is None:
            return -1
        header = b""
        if self._shm is not None:
            header = self._shm[:_WAL_HEADER_SIZE]
            if header == self._header:
                return self._value
        try:
            value = self._read_counter()
        except sqlite3.Error:
            self._header = b""
            self._blind -= 1  # cannot tell: report a change, every time, until it can
            return self._blind
        self._header, self._value = header, value
        return value

    def _read_counter(self) -> int:
        assert self._conn is not None
        row = self._conn.execute("SELECT value FROM change_counter WHERE id = 1").fetchone()
        return int(row[0]) if row is not None else -1

    async def confirmed_generation(self) -> int:
        return self.generation()  # reads the database itself: already current

    async def wait(self, generation: int) -> int:
        while True:
            current = self.generation()
            if current != generation:
                return current
            await asyncio.sleep(self.POLL_SECONDS)

    async def aclose(self) -> None:
        if self._shm is not None:
            self._shm.close()
            self._shm = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# Both copies of the WAL-index header (48 bytes each); a commit rewrites them.
_WAL_HEADER_SIZE = 96


class PostgresWatcher:
    """LISTENs for changes, and confirms them for requests that must see every earlier commit.

    NOTIFY reaches the listener asynchronously, possibly after the client's next request, so
    ``confirmed_generation`` reads the counter itself: a revocation committed before a request
    is seen by that request. One read serves every request that arrived before it started;
    requests that arrive while a read is in flight share the next one, which starts as soon as
    it ends. Under load that is one read per database round trip instead of one per request.
    The reads use a connection of their own in autocommit mode: one round trip each, without
    the pool's checkout ping and the BEGIN and ROLLBACK around it (decision 0017).
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._count = 0
        self._listening = False
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        self._changed = asyncio.Event()
        self._last_counter: Any = None
        self._confirming: list[asyncio.Future[None]] = []  # requests waiting for the next read
        self._reader: asyncio.Task[None] | None = None
        self._reader_conn: AsyncConnection | None = None
        self._reader_driver: Any = None  # asyncpg's connection under ``_reader_conn``

    def generation(self) -> int:
        if not self._listening:
            self._count += 1  # blind: treat every request as after a change
        return self._count

    async def wait(self, generation: int) -> int:
        while self._count == generation:
            self._changed.clear()
            # While blind, wake every second so waiters re-check rather than trust silence.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0 if self._listening else 0.2)
            if not self._listening:
                self._count += 1
        return self._count

    async def confirmed_generation(self) -> int:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._confirming.append(waiter)
        if self._reader is None:
            self._reader = loop.create_task(self._confirm_all(), name="patchbay-change-counter")
        await waiter
        return self.generation()

    async def _confirm_all(self) -> None:
        """Read the counter for the waiting requests, batch after batch, until none wait."""
        waiters: list[asyncio.Future[None]] = []
        try:
            while self._confirming:
                # Every waiter of this batch arrived before the read below starts.
                waiters, self._confirming = self._confirming, []
                try:
                    value = await self._read_counter()
                except Exception as exc:  # noqa: BLE001 - handed to the waiting requests (they answer 503)
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                if value != self._last_counter:
                    self._last_counter = value
                    self._count += 1
                    self._changed.set()
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._reader = None
            for waiter in [*waiters, *self._confirming]:
                waiter.cancel()  # only if still pending: we were cancelled mid-read
            self._confirming = []

    async def _read_counter(self) -> Any:
        kept = self._reader_conn is not None
        try:
            return await self._read_once()
        except DBAPIError as exc:
            if not (kept and exc.connection_invalidated):
                raise
            # The kept connection died while idle (a restarted server, an idle timeout): once more
            # on a fresh one, so nobody sees an error for it.
            logger.info("the change counter's database connection was closed; reconnecting")
            return await self._read_once()

    async def _read_once(self) -> Any:
        conn = self._reader_conn
        fresh = conn is None
        if conn is None:
            conn = self._reader_conn = await self._engine.connect()
            self._reader_driver = None
        try:
            if fresh:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            if self._engine.dialect.driver != "asyncpg":  # any other database this watcher is given
                return (await conn.exec_driver_sql(_COUNTER_SQL)).scalar()
            driver = self._reader_driver
            if driver is None:
                # Kept with the connection: asking SQLAlchemy for it runs a greenlet every time.
                raw = await conn.get_raw_connection()
                driver = self._reader_driver = raw.driver_connection
            try:
                # asyncpg itself: SQLAlchemy's execution path cost ~20 µs per proxied call here.
                return await driver.fetchval(_COUNTER_SQL)
            except Exception as exc:  # asyncpg's errors, as SQLAlchemy's (the endpoint answers 503)
                import asyncpg  # loaded by now: this watcher runs on asyncpg only

                lost = isinstance(exc, OSError | asyncpg.InterfaceError) or str(getattr(exc, "sqlstate", ""))[:2] in (
                    "08",  # connection exception
                    "57",  # operator intervention: the server shut down or ended us
                )
                raise DBAPIError(_COUNTER_SQL, None, exc, connection_invalidated=lost) from exc
        except BaseException:
            self._reader_conn = self._reader_driver = None
            await _close_quietly(conn)
            raise

    def _notified(self, *_args: Any) -> None:
        self._count += 1
        self._changed.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        async with asyncio.timeout(10):
            await self._woken.wait()

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            try:
                async with self._engine.connect() as conn:
                    raw = await conn.get_raw_connection()
                    driver: Any = raw.driver_connection
                    closed = asyncio.Event()
                    driver.add_termination_listener(lambda _conn, done=closed: done.set())
                    await driver.add_listener(CHANNEL, self._notified)
                    self._listening = True
                    self._count += 1
                    self._changed.set()
                    self._woken.set()
                    delay = 0.2
                    await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception:  # any database failure: stay blind, retry with backoff
                logger.exception("lost the PostgreSQL change listener; retrying in %.1fs", delay)
            self._listening = False
            self._woken.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def aclose(self) -> None:
        for task in (self._task, self._reader):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        conn, self._reader_conn, self._reader_driver = self._reader_conn, None, None
        if conn is not None:
            await _close_quietly(conn)


async def _close_quietly(conn: AsyncConnection) -> None:
    try:
        await conn.close()
    except Exception:  # already broken: the pool replaces it
        logger.debug("closing the change counter's connection failed", exc_info=True)


def make_watcher(engine: AsyncEngine, sqlite_path: str | None) -> ChangeWatcher:
    if engine.dialect.name == "sqlite" and sqlite_path:
        return SqliteWatcher(sqlite_path)
    return PostgresWatcher(engine)
