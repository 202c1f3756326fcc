"""Test support for the shared store: a throwaway Redis namespace and a proxy that plays outages."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream, TaskGroup
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from patchbay.state.redis import RedisStore

REDIS_URL = os.environ.get("PATCHBAY_TEST_REDIS", "redis://127.0.0.1:6379/0")


def require_redis() -> str:
    """The test Redis URL; skips the test on a machine without one."""
    client = SyncRedis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except RedisConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    finally:
        client.close()
    return REDIS_URL


@dataclass
class RedisNamespace:
    """A random key prefix for one test, and the stores opened on it (closed and wiped after)."""

    url: str
    prefix: str = field(default_factory=lambda: f"patchbay-test:{uuid.uuid4().hex}:")
    stores: list[RedisStore] = field(default_factory=list)

    def open(self, url: str | None = None, **options: Any) -> RedisStore:
        store = RedisStore(url or self.url, prefix=self.prefix, **options)
        self.stores.append(store)
        return store

    async def cleanup(self) -> None:
        for store in self.stores:
            await store.aclose()
        client = Redis.from_url(self.url)
        try:
            async for key in client.scan_iter(match=f"{self.prefix}*"):
                await client.delete(key)
        finally:
            await client.aclose()


Mode = Literal["up", "down", "silent"]


class FlakyProxy:
    """``down`` cuts every connection and refuses new ones, as a stopped Redis does; ``silent``
    keeps sockets open but drops every byte, as a network partition does. Going ``up`` cuts the
    silenced connections, so a client talks to Redis again only through a fresh connection."""

    def __init__(self, target_host: str, target_port: int, port: int, db_path: str) -> None:
        self._target = (target_host, target_port)
        self.port = port
        self._db_path = db_path
        self.mode: Mode = "up"
        self.accepted = 0
        self._accepted_changed = anyio.Event()
        self._connections: set[anyio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self._db_path}"

    def set_mode(self, mode: Mode) -> None:
        self.mode = mode
        if mode != "silent":
            for scope in self._connections:
                scope.cancel()

    async def wait_accepted(self, count: int) -> None:
        """Wait until ``count`` connections have been accepted in total."""
        while self.accepted < count:
            await self._accepted_changed.wait()

    async def _handle(self, client: SocketStream) -> None:
        self.accepted += 1
        self._accepted_changed.set()
        self._accepted_changed = anyio.Event()
        with anyio.CancelScope() as scope:
            self._connections.add(scope)
            try:
                async with client:
                    if self.mode == "down":
                        return
                    if self.mode == "silent":
                        await self._pipe(client, None)
                        return
                    upstream = await anyio.connect_tcp(*self._target)
                    async with upstream, anyio.create_task_group() as tg:
                        tg.start_soon(self._pipe_then_cut, client, upstream, tg)
                        tg.start_soon(self._pipe_then_cut, upstream, client, tg)
            except OSError:
                pass
            finally:
                self._connections.discard(scope)

    async def _pipe_then_cut(self, source: SocketStream, sink: SocketStream, tg: TaskGroup) -> None:
        await self._pipe(source, sink)
        tg.cancel_scope.cancel()

    async def _pipe(self, source: SocketStream, sink: SocketStream | None) -> None:
        try:
            async for chunk in source:
                if sink is not None and self.mode == "up":
                    await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass


@asynccontextmanager
async def flaky_proxy(redis_url: str) -> AsyncIterator[FlakyProxy]:
    """Run a ``FlakyProxy`` to ``redis_url`` on a free local port for the duration of the block."""
    target = urlsplit(redis_url)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)
    proxy = FlakyProxy(target.hostname or "127.0.0.1", target.port or 6379, port, target.path)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, proxy._handle)
        try:
            yield proxy
        finally:
            proxy.set_mode("down")
            tg.cancel_scope.cancel()
