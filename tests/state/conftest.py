"""Stores for the shared-store suite: every behaviour test runs on memory and on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from patchbay.state import MemoryStore, SharedStore
from tests.state.support import RedisNamespace, require_redis


@pytest.fixture
async def redis_namespace() -> AsyncIterator[RedisNamespace]:
    namespace = RedisNamespace(require_redis())
    yield namespace
    await namespace.cleanup()


@dataclass
class Replicas:
    """One store plus a way to open another handle on the same shared state, as a second
    gateway process would (for memory, state is per process, so the "other" is the same)."""

    store: SharedStore
    open_peer: Callable[[], SharedStore]


@pytest.fixture(params=["memory", "redis"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    if request.param == "memory":
        memory = MemoryStore()
        yield Replicas(memory, lambda: memory)
        await memory.aclose()
        return
    namespace = RedisNamespace(require_redis())
    yield Replicas(namespace.open(), namespace.open)
    await namespace.cleanup()


@pytest.fixture
def store(replicas: Replicas) -> SharedStore:
    return replicas.store


@pytest.fixture
def peer(replicas: Replicas) -> SharedStore:
    return replicas.open_peer()
