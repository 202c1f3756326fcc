"""What only the Redis store has to show: namespaces, and living through a Redis outage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from patchbay.errors import StoreUnavailable
from patchbay.settings import Settings
from patchbay.state import MemoryStore, make_store
from patchbay.state.redis import RedisStore
from tests.state.support import FlakyProxy, RedisNamespace, flaky_proxy

pytestmark = pytest.mark.anyio

WAIT = 5.0

# Short timeouts so an outage shows within a fraction of a second.
FAST = {
    "socket_timeout": 0.3,
    "connect_timeout": 0.3,
    "health_check_interval": 0.2,
    "reconnect_initial": 0.02,
    "reconnect_max": 0.1,
}


@pytest.fixture
async def proxy(redis_namespace: RedisNamespace) -> AsyncIterator[FlakyProxy]:
    async with flaky_proxy(redis_namespace.url) as running:
        yield running


async def receive_soon(messages: AsyncIterator[tuple[str, bytes]]) -> tuple[str, bytes] | None:
    with anyio.move_on_after(0.05):
        return await anext(messages)
    return None


async def publish_until_received(
    publisher: RedisStore, messages: AsyncIterator[tuple[str, bytes]], channel: str
) -> tuple[str, bytes]:
    """Publish until the subscriber hears one; it misses whatever was sent while it reconnected."""
    with anyio.fail_after(WAIT):
        while True:
            await publisher.publish(channel, b"after")
            received = await receive_soon(messages)
            if received is not None:
                return received


def test_make_store_is_memory_without_a_redis_url(tmp_path: Path) -> None:
    assert isinstance(make_store(Settings(home=tmp_path, redis_url=None)), MemoryStore)


async def test_make_store_is_redis_with_a_redis_url(tmp_path: Path) -> None:
    store = make_store(Settings(home=tmp_path, redis_url="redis://127.0.0.1:6379/0"), prefix="pb-x:")
    assert isinstance(store, RedisStore)
    assert store.prefix == "pb-x:"
    await store.aclose()


async def test_stores_with_different_prefixes_share_nothing(redis_namespace: RedisNamespace) -> None:
    ours = redis_namespace.open()
    theirs = RedisStore(redis_namespace.url, prefix=redis_namespace.prefix + "other:")
    try:
        await ours.set("k", b"ours")
        assert await theirs.get("k") is None
        async with theirs.subscribe("events") as messages:
            await ours.publish("events", b"not yours")
            await theirs.publish("events", b"yours")
            assert await receive_soon(messages) == ("events", b"yours")
    finally:
        await theirs.aclose()


async def test_operations_fail_fast_while_redis_is_down_and_work_once_it_is_back(
    redis_namespace: RedisNamespace, proxy: FlakyProxy
) -> None:
    store = redis_namespace.open(proxy.url, **FAST)
    await store.set("k", b"v")

    proxy.set_mode("down")
    with anyio.fail_after(WAIT):
        with pytest.raises(StoreUnavailable):
            await store.get("k")
        with pytest.raises(StoreUnavailable):
            await store.incr("n")
        assert not await store.ping()

    proxy.set_mode("up")
    assert await store.ping()
    assert await store.get("k") == b"v"


async def test_a_silent_redis_raises_instead_of_hanging(redis_namespace: RedisNamespace, proxy: FlakyProxy) -> None:
    store = redis_namespace.open(proxy.url, **FAST)
    await store.set("k", b"v")

    proxy.set_mode("silent")
    with anyio.fail_after(WAIT), pytest.raises(StoreUnavailable):
        await store.get("k")
    with anyio.fail_after(WAIT), pytest.raises(StoreUnavailable):
        async with store.subscribe("events"):
            pass

    proxy.set_mode("up")
    assert await store.get("k") == b"v"


async def test_subscribe_raises_while_redis_is_down(redis_namespace: RedisNamespace, proxy: FlakyProxy) -> None:
    store = redis_namespace.open(proxy.url, **FAST)
    proxy.set_mode("down")
    with anyio.fail_after(WAIT), pytest.raises(StoreUnavailable):
        async with store.subscribe("events"):
            pass


async def test_subscription_resumes_after_redis_restarts(redis_namespace: RedisNamespace, proxy: FlakyProxy) -> None:
    subscriber = redis_namespace.open(proxy.url, **FAST)
    publisher = redis_namespace.open()
    async with subscriber.subscribe("events") as messages:
        await publisher.publish("events", b"before")
        assert await receive_soon(messages) == ("events", b"before")

        accepted = proxy.accepted
        proxy.set_mode("down")
        # The subscription keeps trying; wait until it has been refused at least once.
        with anyio.fail_after(WAIT):
            await proxy.wait_accepted(accepted + 1)
        proxy.set_mode("up")

        assert await publish_until_received(publisher, messages, "events") == ("events", b"after")


async def test_subscription_replaces_a_connection_that_went_silent(
    redis_namespace: RedisNamespace, proxy: FlakyProxy
) -> None:
    subscriber = redis_namespace.open(proxy.url, **FAST)
    publisher = redis_namespace.open()
    async with subscriber.subscribe("events") as messages:
        accepted = proxy.accepted
        proxy.set_mode("silent")
        # No error ever reaches a silent socket: only the unanswered health-check ping tells.
        with anyio.fail_after(WAIT):
            await proxy.wait_accepted(accepted + 1)
        proxy.set_mode("up")

        assert await publish_until_received(publisher, messages, "events") == ("events", b"after")
