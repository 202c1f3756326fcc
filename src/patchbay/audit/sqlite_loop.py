"""Audit batches written to a SQLite file from the event loop itself (decision 0020).

Through aiosqlite, a batch went to a worker thread that bound its ~13,000 parameters holding
the GIL and stepped SQLite without it. The event loop and that thread handed the GIL back and
forth for the whole batch: the gateway spent ~0.01 ms more CPU per proxied call than with the
same statements run on the loop (0.096 against 0.088 ms), which was a tenth of a proxied call.

So the writer keeps a connection of its own and runs the batch on the loop: one transaction,
statements of ``ROWS_PER_STATEMENT`` rows (~0.4 ms of work each), with a turn of the loop
between them so requests are not held up for a whole batch. The connection never waits inside
SQLite: a lock held by another writer (the CLI, an API call) is waited for with ``asyncio.sleep``,
and checkpoints, which copy the WAL into the database file and sync it, run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

ROWS_PER_STATEMENT = 64  # a power of two: statements are padded to one (``_CompiledInsert``)
CHECKPOINT_ROWS = 4096  # rows written between two checkpoints (~2.5 MB of WAL)
_BUSY_FIRST_WAIT = 0.002
_BUSY_GIVE_UP = 2.0  # seconds of waiting for another writer before the batch counts as failed


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file behind a SQLite engine; None for any other database or an in-memory one."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.query:
        return None
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def is_closed_connection(exc: BaseException) -> bool:
    """True for the error of a connection closed under us (what a retry on a fresh one fixes)."""
    return isinstance(exc, sqlite3.ProgrammingError) and "closed database" in str(exc)


class LoopSqlite:
    """The audit writer's own connection to a SQLite file, used only on the event loop."""

    __slots__ = ("_checkpoint", "_conn", "_path", "_since_checkpoint")

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._since_checkpoint = 0
        self._checkpoint: asyncio.Future[None] | None = None

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def insert(self, statements: Iterable[tuple[str, Any]], rows: int) -> None:
        """Run ``statements`` (INSERTs of ``rows`` rows in all) as one transaction."""
        conn = self._connection()
        try:
            await _retry_busy(conn, "BEGIN IMMEDIATE")
            first = True
            for sql, parameters in statements:
                if not first:
                    await asyncio.sleep(0)  # let requests run between statements
                first = False
                conn.execute(sql, parameters)
            await _retry_busy(conn, "COMMIT")
        except BaseException:
            self._discard()  # rolls back what the transaction did; the next batch opens afresh
            raise
        self._since_checkpoint += rows
        if self._since_checkpoint >= CHECKPOINT_ROWS and self._checkpoint is None:
            self._since_checkpoint = 0
            self._checkpoint = asyncio.get_running_loop().run_in_executor(None, _checkpoint, self._path)
            self._checkpoint.add_done_callback(self._checkpoint_done)

    async def aclose(self) -> None:
        """Close the connection, once a checkpoint under way has finished."""
        self._discard()
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._checkpoint)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            # timeout=0: SQLite's busy handler would sleep on the loop; ``_retry_busy`` waits instead.
            conn = sqlite3.connect(self._path, timeout=0, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA wal_autocheckpoint=0")  # a checkpoint syncs files: not on the loop
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()  # an open transaction is rolled back

    def _checkpoint_done(self, future: asyncio.Future[None]) -> None:
        self._checkpoint = None
        if not future.cancelled() and (exc := future.exception()) is not None:
            logger.warning("checkpointing the audit records' WAL failed: %s", exc)


async def _retry_busy(conn: sqlite3.Connection, sql: str) -> None:
    """Run ``sql``, waiting on the loop (not in SQLite) while another connection holds the write lock."""
    wait = _BUSY_FIRST_WAIT
    waited = 0.0
    while True:
        try:
            conn.execute(sql)
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
            if not busy or waited >= _BUSY_GIVE_UP:
                raise
        await asyncio.sleep(wait)
        waited += wait
        wait = min(wait * 2, 0.1)


def _checkpoint(path: str) -> None:
    """Copy the WAL's committed pages into the database file (in a worker thread)."""
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()
