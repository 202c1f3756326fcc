"""The pool: one connection per spec key, idle reaping, the process cap, backoff and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import psutil  # type: ignore[import-untyped]
import pytest

from patchbay.errors import UpstreamError
from patchbay.routing.upstream.base import UpstreamConnection, UpstreamSpec
from patchbay.routing.upstream.pool import UpstreamPool, UpstreamRestarting
from patchbay.routing.upstream.stdio import StdioConnection
from tests.routing.conftest import BlockingSink, call, stdio_spec, text_of, tiny_spec, wait_until

pytestmark = pytest.mark.anyio


def pid_of(conn: UpstreamConnection) -> int:
    assert isinstance(conn, StdioConnection)
    assert conn.pid is not None
    return conn.pid


def running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
async def small_pool() -> AsyncIterator[UpstreamPool]:
    pool = UpstreamPool(max_stdio_processes=2, idle_seconds=600, connect_timeout=20)
    await pool.start()
    yield pool
    await pool.aclose()


async def test_concurrent_first_calls_create_one_connection(pool: UpstreamPool) -> None:
    spec = tiny_spec()
    before = {p.pid for p in psutil.Process().children(recursive=True)}

    async def one(index: int) -> None:
        await pool.request(spec, "tools/call", call("echo", text=str(index)), timeout=20)

    async with anyio.create_task_group() as tg:
        for index in range(10):
            tg.start_soon(one, index)
    spawned = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert spawned == {pid_of(await pool.connection(spec))}
    assert pool.stats()["stdio_processes"] == 1


async def test_idle_processes_are_reaped() -> None:
    pool = UpstreamPool(max_stdio_processes=4, idle_seconds=0.3, connect_timeout=20)
    await pool.start()
    try:
        spec = tiny_spec()
        await pool.request(spec, "tools/call", call("echo", text="x"), timeout=20)
        pid = pid_of(await pool.connection(spec))
        await wait_until(lambda: pool.stats()["stdio_processes"] == 0)
        await wait_until(lambda: not running(pid))
        # The next call simply starts a new process: reaping is not a failure.
        assert text_of(await pool.request(spec, "tools/call", call("echo", text="y"), timeout=20)) == "y"
        assert pid_of(await pool.connection(spec)) != pid
    finally:
        await pool.aclose()


async def test_a_busy_process_is_not_reaped_while_idle_ones_are() -> None:
    pool = UpstreamPool(max_stdio_processes=4, idle_seconds=0.2, connect_timeout=20)
    await pool.start()
    try:
        busy, idle = tiny_spec("busy"), tiny_spec("idle")
        await pool.request(idle, "tools/call", call("echo", text="x"), timeout=20)
        sink = BlockingSink()

        async def sample() -> None:
            await pool.request(busy, "tools/call", call("sample"), timeout=30, sink=sink)

        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            await sink.asked.wait()
            await wait_until(lambda: pool.stats()["stdio_processes"] == 1)
            sink.release.set()
        assert not (await pool.connection(busy)).closed
    finally:
        await pool.aclose()


async def test_the_process_cap_evicts_the_least_recently_used_idle_process(small_pool: UpstreamPool) -> None:
    first, second, third = tiny_spec("a"), tiny_spec("b"), tiny_spec("c")
    await small_pool.request(first, "tools/call", call("echo", text="1"), timeout=20)
    await small_pool.request(second, "tools/call", call("echo", text="2"), timeout=20)
    first_pid, second_pid = (
        pid_of(await small_pool.connection(first)),
        pid_of(await small_pool.connection(second)),
    )
    await small_pool.request(first, "tools/call", call("echo", text="1 again"), timeout=20)  # b is now older
    await small_pool.request(third, "tools/call", call("echo", text="3"), timeout=20)
    assert small_pool.stats()["stdio_processes"] == 2
    assert not running(second_pid)
    assert running(first_pid)


async def test_the_process_cap_refuses_when_every_process_is_busy(small_pool: UpstreamPool) -> None:
    sinks = [BlockingSink(), BlockingSink()]

    async def sample(key: str, sink: BlockingSink) -> None:
        spec = tiny_spec(key)
        await small_pool.request(spec, "tools/call", call("sample"), timeout=30, sink=sink)

    async with anyio.create_task_group() as tg:
        for index, sink in enumerate(sinks):
            tg.start_soon(sample, f"busy{index}", sink)
            await sink.asked.wait()
        with pytest.raises(UpstreamError, match=r"^too many upstream processes: all 2 allowed are busy"):
            await small_pool.request(tiny_spec("third"), "tools/call", call("echo", text="x"), timeout=20)
        for sink in sinks:
            sink.release.set()


async def test_a_crash_loop_backs_off_and_calls_fail_fast_meanwhile() -> None:
    pool = UpstreamPool(max_stdio_processes=2, idle_seconds=600, connect_timeout=20, backoff_initial=30.0)
    try:
        spec = tiny_spec()
        first = await pool.connection(spec)
        await first.aclose()  # as good as a crash: the pool did not close it
        # The next call replaces it at once; a second death in a row waits for the backoff.
        second = await pool.connection(spec)
        assert second is not first
        await second.aclose()
        with anyio.fail_after(0.5), pytest.raises(UpstreamRestarting, match=r"next attempt in \d+\.\d\d s$"):
            await pool.request(spec, "tools/call", call("echo", text="too soon"), timeout=10)
    finally:
        await pool.aclose()


async def test_a_failing_command_is_retried_once_then_backs_off() -> None:
    pool = UpstreamPool(max_stdio_processes=2, idle_seconds=600, connect_timeout=20, backoff_initial=30.0)
    try:
        spec = stdio_spec("missing", command=("/nonexistent/mcp-server",))
        not_found = r"^upstream 'fixture': command not found: /nonexistent/mcp-server"
        for _ in range(2):  # the first failure is retried by the next call straight away
            with pytest.raises(UpstreamError, match=not_found + "$"):
                await pool.request(spec, "tools/list", None, timeout=5)
        with pytest.raises(UpstreamRestarting, match=not_found + r"; next attempt in \d+\.\d\d s$") as info:
            await pool.request(spec, "tools/list", None, timeout=5)
        assert 29 < info.value.retry_after <= 30
        assert pool.stats()["restarting"] == 1
    finally:
        await pool.aclose()


async def test_aclose_ends_every_process_group() -> None:
    pool = UpstreamPool(max_stdio_processes=4, idle_seconds=600, connect_timeout=20)
    await pool.start()
    pids = []
    for key in ("x", "y"):
        await pool.request(tiny_spec(key), "tools/call", call("echo", text=key), timeout=20)
        pid = pid_of(await pool.connection(tiny_spec(key)))
        pids += [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    with anyio.fail_after(10):
        await pool.aclose()
    assert not any(running(pid) for pid in pids)
    assert pool.stats()["stdio_processes"] == 0
    with pytest.raises(UpstreamError, match="pool is closed"):
        await pool.request(tiny_spec("x"), "tools/list", None, timeout=5)


async def test_stats_count_connections_by_transport(pool: UpstreamPool, http_url: str, sse_url: str) -> None:
    await pool.connection(tiny_spec())
    await pool.connection(UpstreamSpec(key="h", name="h", transport="streamable_http", url=http_url))
    await pool.connection(UpstreamSpec(key="s", name="s", transport="sse", url=sse_url))
    assert pool.stats() == {
        "stdio_processes": 1,
        "connections": {"stdio": 1, "streamable_http": 1, "sse": 1},
        "restarting": 0,
    }
