"""The per-process pool of upstream connections: one per spec key, restarted with backoff, stdio capped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from patchbay.errors import UpstreamError
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import MessageSink, UpstreamConnection, UpstreamSpec
from patchbay.routing.upstream.connect import open_connection
from patchbay.routing.upstream.h1 import H1Pool
from patchbay.routing.upstream.http_common import make_client

logger = logging.getLogger(__name__)

# (spec key, method, params) of a connection-level notification such as list_changed.
PoolNotificationHandler = Callable[[str, str, JSONObject], Awaitable[None]]


class UpstreamRestarting(UpstreamError):
    """The upstream failed recently; calls fail fast until ``retry_after`` seconds have passed."""

    code = "upstream_restarting"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Entry:
    """Pool bookkeeping for one spec key."""

    __slots__ = ("busy", "conn", "connecting", "failures", "last_error", "last_used", "retry_at", "spec")

    def __init__(self, spec: UpstreamSpec) -> None:
        self.spec = spec
        self.conn: UpstreamConnection | None = None
        self.connecting: asyncio.Task[UpstreamConnection] | None = None
        self.busy = 0
        self.last_used = time.monotonic()
        self.failures = 0
        self.retry_at = 0.0
        self.last_error: UpstreamError | None = None

    @property
    def live(self) -> bool:
        return self.connecting is not None or (self.conn is not None and not self.conn.closed)


class UpstreamPool:
    """Connections to upstreams, shared by every request this process serves."""

    def __init__(
        self,
        *,
        max_stdio_processes: int,
        idle_seconds: float,
        connect_timeout: float,
        backoff_initial: float = 0.25,
        backoff_max: float = 30.0,
    ) -> None:
        self.max_stdio_processes = max_stdio_processes
        self.idle_seconds = idle_seconds
        self.connect_timeout = connect_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._entries: dict[str, _Entry] = {}
        self._handlers: list[PoolNotificationHandler] = []
        self._client: H1Pool | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    async def start(self) -> None:
        """Start reaping idle stdio processes."""
        if self._reaper is None:
            self._reaper = asyncio.ensure_future(self._reap_idle())

    def on_notification(self, handler: PoolNotificationHandler) -> None:
        """Call ``handler(spec_key, method, params)`` for every connection-level upstream notification."""
        self._handlers.append(handler)

    async def request(
        self,
        spec: UpstreamSpec,
        method: str,
        params: JSONObject | None,
        *,
        timeout: float,  # noqa: ASYNC109 - the connection must know it to cancel upstream
        sink: MessageSink | None = None,
    ) -> JSONObject:
        """Send a request to the upstream of ``spec``, connecting (or reconnecting) first if needed."""
        entry = self._entries.get(spec.key)
        conn = entry.conn if entry is not None else None
        if entry is None or conn is None or conn.closed:
            entry, conn = await self._acquire(spec)
        entry.busy += 1
        try:
            response = await conn.request(method, params, timeout=timeout, sink=sink)
        except UpstreamError as exc:
            if conn.closed:
                self._note_death(entry, conn, exc)
            raise
        finally:
            entry.busy -= 1
            entry.last_used = time.monotonic()
        entry.failures = 0
        return response

    async def connection(self, spec: UpstreamSpec) -> UpstreamConnection:
        """The live connection for ``spec`` (callers using it directly are not counted as busy)."""
        return (await self._acquire(spec))[1]

    async def _acquire(self, spec: UpstreamSpec) -> tuple[_Entry, UpstreamConnection]:
        if self._closed:
            raise UpstreamError("the upstream pool is closed")
        entry = self._entries.get(spec.key)
        if entry is None:
            entry = self._entries[spec.key] = _Entry(spec)
        if entry.conn is not None:
            if not entry.conn.closed:
                return entry, entry.conn
            self._note_death(entry, entry.conn)
        if entry.connecting is None:
            wait = entry.retry_at - time.monotonic()
            if wait > 0:
                raise UpstreamRestarting(f"{entry.last_error}; next attempt in {wait:.2f} s", wait)
            evicted = self._make_room() if spec.transport == "stdio" else None
            entry.connecting = asyncio.ensure_future(self._open(entry, evicted))
        # Shielded: one caller giving up must not abort the connection others are waiting for.
        conn = await asyncio.shield(entry.connecting)
        return entry, conn

    def _make_room(self) -> asyncio.Task[None] | None:
        """Evict the least recently used idle stdio process if the cap is reached."""
        live = [e for e in self._entries.values() if e.spec.transport == "stdio" and e.live]
        if len(live) < self.max_stdio_processes:
            return None
        idle = [e for e in live if e.connecting is None and e.busy == 0]
        if not idle:
            limit = self.max_stdio_processes
            raise UpstreamError(f"too many upstream processes: all {limit} allowed are busy, try again shortly")
        victim = min(idle, key=lambda e: e.last_used)
        assert victim.conn is not None
        logger.info("evicting idle upstream %r to make room for another process", victim.spec.name)
        return self._close_later(victim, victim.conn)

    async def _open(self, entry: _Entry, evicted: asyncio.Task[None] | None) -> UpstreamConnection:
        spec = entry.spec
        try:
            if evicted is not None:
                await evicted  # the process cap counts processes, so the old one goes first
            conn = await open_connection(
                spec,
                client=self._http_client() if spec.transport != "stdio" else None,
                connect_timeout=self.connect_timeout,
                on_notification=partial(self._relay, spec.key),
            )
        except UpstreamError as exc:
            self._backoff(entry, exc)
            raise
        finally:
            entry.connecting = None
        if self._closed:
            await conn.aclose()
            raise UpstreamError("the upstream pool is closed")
        entry.conn = conn
        entry.last_used = time.monotonic()
        return conn

    def _note_death(self, entry: _Entry, conn: UpstreamConnection, error: UpstreamError | None = None) -> None:
        """A connection of ours ended without us closing it: restart it later, with backoff."""
        if entry.conn is conn:
            entry.conn = None
            if not self._closed:
                self._backoff(entry, error or UpstreamError(f"upstream {entry.spec.name!r} stopped unexpectedly"))

    def _backoff(self, entry: _Entry, error: UpstreamError) -> None:
        entry.failures += 1
        # A one-off failure is retried by the next call; only repeated ones wait, doubling each time.
        delay = 0.0 if entry.failures == 1 else self.backoff_initial * 2 ** (entry.failures - 2)
        delay = min(delay, self.backoff_max)
        entry.retry_at = time.monotonic() + delay
        entry.last_error = error
        logger.warning("%s; next attempt in %.2f s", error, delay)

    async def _relay(self, key: str, method: str, params: JSONObject) -> None:
        for handler in self._handlers:
            await handler(key, method, params)

    def _http_client(self) -> H1Pool:
        if self._client is None:
            self._client = make_client(self.connect_timeout)
        return self._client

    def _close_later(self, entry: _Entry, conn: UpstreamConnection) -> asyncio.Task[None]:
        if entry.conn is conn:
            entry.conn = None
        task = asyncio.ensure_future(conn.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def _reap_idle(self) -> None:
        interval = min(max(self.idle_seconds / 4, 0.01), 30.0)
        while True:
            await asyncio.sleep(interval)
            try:
                self._reap_once(time.monotonic())
            except Exception:
                # The reaper is a top-level loop: one bad round must not end reaping for good.
                logger.exception("reaping idle upstreams failed")

    def _reap_once(self, now: float) -> None:
        for key, entry in list(self._entries.items()):
            conn = entry.conn
            if conn is not None and conn.closed:
                self._note_death(entry, conn)
            elif conn is not None and entry.spec.transport == "stdio":
                if entry.busy == 0 and now - entry.last_used >= self.idle_seconds:
                    logger.info("stopping upstream %r after %.0f s idle", entry.spec.name, self.idle_seconds)
                    self._close_later(entry, conn)
            elif conn is None and entry.connecting is None and now >= entry.retry_at + self.backoff_max:
                # Specs carry per-user credentials: forget them once their failure history is stale.
                del self._entries[key]

    def stats(self) -> dict[str, object]:
        """Live stdio processes and open connections by transport."""
        by_transport = {"stdio": 0, "streamable_http": 0, "sse": 0}
        for entry in self._entries.values():
            if entry.conn is not None and not entry.conn.closed:
                by_transport[entry.spec.transport] += 1
        restarting = sum(1 for e in self._entries.values() if e.conn is None and e.retry_at > time.monotonic())
        return {
            "stdio_processes": by_transport["stdio"],
            "connections": by_transport,
            "restarting": restarting,
        }

    def health(self) -> list[tuple[str, str, bool, int]]:
        """Per upstream connection: name, transport, whether it is up, calls in flight (for /metrics)."""
        return [
            (e.spec.name, e.spec.transport, e.conn is not None and not e.conn.closed, e.busy)
            for e in self._entries.values()
        ]

    def http_stats(self) -> dict[str, int]:
        """Open and idle HTTP connections to upstreams."""
        return self._client.stats() if self._client is not None else {"connections": 0, "idle": 0}

    async def aclose(self) -> None:
        """Close every connection and end every upstream process group."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        connecting = [e.connecting for e in self._entries.values() if e.connecting is not None]
        for task in connecting:
            task.cancel()
        for entry in self._entries.values():
            if entry.conn is not None:
                self._close_later(entry, entry.conn)
        await asyncio.gather(*connecting, *self._closing, return_exceptions=True)
        if self._reaper is not None:
            await asyncio.gather(self._reaper, return_exceptions=True)
        self._entries.clear()
        if self._client is not None:
            await self._client.aclose()
