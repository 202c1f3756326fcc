"""Audit rows written from a worker thread while the main thread is busy, as the event loop is.

``sqlite3``'s ``executemany`` releases the GIL around every row's step. With a main thread that
holds the GIL most of the time, each row then waits to get it back (decision 0017). This writes
the same rows three ways, each with an idle and a busy main thread, and prints the worker
thread's CPU and context switches per row:

- ``executemany``: one ``executemany`` per batch in BEGIN…COMMIT (the writer before decision 0017);
- ``multirow-tx``: the writer's multi-row statements, inside BEGIN…COMMIT;
- ``multirow``: the writer's multi-row statements in autocommit mode (what the writer does).

    .venv/bin/python bench/sqlite_audit_gil.py [--rows 40000] [--batch 400] [--dir DIR]

The convoy needs a free core for each thread: on a box busy with other work the two threads
rarely run at once and the ways look alike. On this 2-core VM, quiet (2026-12-05):
``executemany`` 9.7 µs/row idle and 18.4 busy (1.9 context switches per row); ``multirow`` 8.5
idle and 9.6 busy (0.02).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.dialects import sqlite as sqlite_dialect

from patchbay.audit.events import AuditEvent, fresh
from patchbay.audit.writer import _compiled_insert
from patchbay.store.models import AuditRecord

Batch = list[AuditEvent]


def _database(folder: str) -> sqlite3.Connection:
    path = os.path.join(folder, "audit.db")
    engine = create_engine(f"sqlite:///{path}")
    AuditRecord.__table__.create(engine)
    engine.dispose()
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _writer(way: str, conn: sqlite3.Connection) -> Callable[[Batch], None]:
    insert = _compiled_insert(sqlite_dialect.dialect())

    def executemany(batch: Batch) -> None:
        conn.execute("BEGIN")
        conn.executemany(insert.sql, insert.encode(batch))
        conn.execute("COMMIT")

    def multirow(batch: Batch) -> None:
        for sql, parameters in insert.statements(batch):
            conn.execute(sql, parameters)

    def multirow_tx(batch: Batch) -> None:
        conn.execute("BEGIN")
        multirow(batch)
        conn.execute("COMMIT")

    return {"executemany": executemany, "multirow": multirow, "multirow-tx": multirow_tx}[way]


def _batches(rows: int, size: int) -> list[Batch]:
    def event() -> AuditEvent:
        return fresh(
            org_id="o" * 32,
            server_id="s" * 32,
            api_key_id="k" * 32,
            key_prefix="pb_abcdefgh",
            method="tools/call",
            tool_name="echo__echo",
            tool_id="t" * 32,
            duration_ms=0.8,
            bytes_in=140,
            bytes_out=160,
            user_agent="loadgen/1",
            request_id="r" * 16,
            transport="streamable_http",
            credential="own",
        )

    return [[event() for _ in range(size)] for _ in range(rows // size)]


def run(way: str, busy: bool, args: argparse.Namespace) -> dict[str, Any]:
    folder = tempfile.mkdtemp(dir=args.dir)
    try:
        conn = _database(folder)
        write = _writer(way, conn)
        batches = _batches(args.rows, args.batch)
        result: dict[str, float] = {}

        def worker() -> None:
            before = resource.getrusage(resource.RUSAGE_THREAD)
            for batch in batches:
                write(batch)
            after = resource.getrusage(resource.RUSAGE_THREAD)
            result["cpu"] = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            result["switches"] = after.ru_nvcsw - before.ru_nvcsw + after.ru_nivcsw - before.ru_nivcsw

        read_end, write_end = os.pipe()
        thread = threading.Thread(target=worker)
        started = time.perf_counter()
        thread.start()
        while thread.is_alive():
            if busy:
                total = 0
                for i in range(300):  # ~10 µs of Python holding the GIL
                    total += i
                os.write(write_end, b"x")  # then a system call that releases it, as the loop's I/O does
                os.read(read_end, 1)
            else:
                thread.join(0.05)
        wall = time.perf_counter() - started
        os.close(read_end)
        os.close(write_end)
        conn.close()
        rows = len(batches) * args.batch
        return {
            "way": way,
            "main": "busy" if busy else "idle",
            "worker_cpu_us_per_row": result["cpu"] / rows * 1e6,
            "switches_per_row": result["switches"] / rows,
            "wall_us_per_row": wall / rows * 1e6,
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=400)
    parser.add_argument("--dir", default=None, help="where the database goes (default: a temp dir)")
    args = parser.parse_args()
    print(f"{args.rows} audit rows in batches of {args.batch}; worker thread CPU and context switches per row")
    for way in ("executemany", "multirow-tx", "multirow"):
        for busy in (False, True):
            r = run(way, busy, args)
            print(
                f"{r['way']:12s} main thread {r['main']}: {r['worker_cpu_us_per_row']:6.1f} µs CPU/row, "
                f"{r['switches_per_row']:5.2f} switches/row, {r['wall_us_per_row']:6.1f} µs wall/row"
            )


if __name__ == "__main__":
    main()
