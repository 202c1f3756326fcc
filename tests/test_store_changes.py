"""The SQLite change watcher: a commit elsewhere is seen on the very next call, other writes are not."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from patchbay.store.changes import SqliteWatcher

pytestmark = pytest.mark.anyio


def _database(path: Path, journal_mode: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal_mode}")
    conn.execute("CREATE TABLE IF NOT EXISTS change_counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
    conn.execute("CREATE TABLE IF NOT EXISTS other (n INTEGER)")
    conn.execute("INSERT OR IGNORE INTO change_counter VALUES (1, 0)")
    return conn


def _bump(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE change_counter SET value = value + 1 WHERE id = 1")


@pytest.fixture(params=["wal", "delete"])
async def setup(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[SqliteWatcher, sqlite3.Connection]]:
    path = tmp_path / "db.sqlite"
    writer = _database(path, request.param)
    watcher = SqliteWatcher(str(path))
    await watcher.start()
    try:
        yield watcher, writer
    finally:
        await watcher.aclose()
        writer.close()


async def test_every_counter_bump_by_another_connection_is_seen_on_the_next_call(
    setup: tuple[SqliteWatcher, sqlite3.Connection],
) -> None:
    watcher, writer = setup
    seen = watcher.generation()
    for _ in range(200):
        _bump(writer)
        now = watcher.generation()
        assert now != seen
        seen = now


async def test_commits_that_leave_the_counter_alone_keep_the_generation(
    setup: tuple[SqliteWatcher, sqlite3.Connection],
) -> None:
    watcher, writer = setup
    before = watcher.generation()
    for n in range(20):
        writer.execute("INSERT INTO other VALUES (?)", (n,))
        assert watcher.generation() == before
    assert watcher.generation() == before


async def test_a_bump_between_unrelated_commits_is_not_lost(
    setup: tuple[SqliteWatcher, sqlite3.Connection],
) -> None:
    watcher, writer = setup
    before = watcher.generation()
    writer.execute("INSERT INTO other VALUES (1)")
    _bump(writer)
    writer.execute("INSERT INTO other VALUES (2)")
    assert watcher.generation() != before


async def test_a_watcher_that_cannot_read_reports_a_change_every_time(
    setup: tuple[SqliteWatcher, sqlite3.Connection],
) -> None:
    watcher, writer = setup
    writer.execute("ALTER TABLE change_counter RENAME TO change_counter_away")
    first, second = watcher.generation(), watcher.generation()
    assert first != second
    writer.execute("ALTER TABLE change_counter_away RENAME TO change_counter")
