"""Behaviour of every SharedStore: the same sentences hold for memory and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from patchbay.errors import StoreUnavailable
from patchbay.state import SharedStore

pytestmark = pytest.mark.anyio

WAIT = 5.0  # upper bound for anything that should happen "soon"; never a fixed delay


async def wait_until_gone(store: SharedStore, key: str) -> None:
    with anyio.fail_after(WAIT):
        # Expiry has no event to wait on, so poll it within the bound.
        while await store.get(key) is not None:  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def next_message(messages: AsyncIterator[tuple[str, bytes]]) -> tuple[str, bytes]:
    with anyio.fail_after(WAIT):
        return await anext(messages)


# --- keys ------------------------------------------------------------------------------------


async def test_missing_key_reads_as_none(store: SharedStore) -> None:
    assert await store.get("nothing-here") is None


async def test_value_round_trips_as_bytes(store: SharedStore) -> None:
    value = bytes(range(256))
    await store.set("blob", value)
    assert await store.get("blob") == value


async def test_set_replaces_the_value_and_drops_the_ttl(store: SharedStore) -> None:
    await store.set("k", b"first", ttl=0.1)
    await store.set("k", b"second")
    await store.set("control", b"x", ttl=0.1)
    await wait_until_gone(store, "control")
    assert await store.get("k") == b"second"


async def test_key_with_ttl_expires(store: SharedStore) -> None:
    await store.set("short", b"v", ttl=0.3)
    assert await store.get("short") == b"v"
    await wait_until_gone(store, "short")


async def test_delete_removes_a_key_and_ignores_a_missing_one(store: SharedStore) -> None:
    await store.set("k", b"v")
    await store.delete("k")
    await store.delete("k")
    assert await store.get("k") is None


async def test_expire_renews_the_ttl(store: SharedStore) -> None:
    await store.set("session", b"v", ttl=0.2)
    await store.set("control", b"x", ttl=0.2)
    assert await store.expire("session", 60)
    await wait_until_gone(store, "control")
    assert await store.get("session") == b"v"


async def test_expire_reports_a_missing_key(store: SharedStore) -> None:
    assert not await store.expire("never-set", 10)
    await store.set("short", b"v", ttl=0.05)
    await wait_until_gone(store, "short")
    assert not await store.expire("short", 10)


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf")])
async def test_a_ttl_that_is_not_a_positive_number_is_rejected(store: SharedStore, ttl: float) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await store.set("k", b"v", ttl=ttl)
    with pytest.raises(ValueError, match="ttl"):
        await store.incr("n", ttl=ttl)
    assert await store.get("k") is None


# --- set_if_absent -----------------------------------------------------------------------------


async def test_set_if_absent_sets_only_the_first_time(store: SharedStore) -> None:
    assert await store.set_if_absent("lock", b"a")
    assert not await store.set_if_absent("lock", b"b")
    assert await store.get("lock") == b"a"


async def test_set_if_absent_succeeds_again_once_the_key_expired(store: SharedStore) -> None:
    assert await store.set_if_absent("lock", b"a", ttl=0.1)
    await wait_until_gone(store, "lock")
    assert await store.set_if_absent("lock", b"b", ttl=10)
    assert await store.get("lock") == b"b"


async def test_concurrent_set_if_absent_across_replicas_has_exactly_one_winner(
    store: SharedStore, peer: SharedStore
) -> None:
    winners: list[int] = []

    async def contend(index: int) -> None:
        replica = store if index % 2 else peer
        if await replica.set_if_absent("leader", str(index).encode(), ttl=30):
            winners.append(index)

    async with anyio.create_task_group() as tg:
        for index in range(50):
            tg.start_soon(contend, index)

    assert len(winners) == 1
    assert await store.get("leader") == str(winners[0]).encode()


# --- incr --------------------------------------------------------------------------------------


async def test_incr_counts_from_one_and_reads_back_as_bytes(store: SharedStore) -> None:
    assert await store.incr("hits") == 1
    assert await store.incr("hits") == 2
    assert await store.get("hits") == b"2"


async def test_incr_continues_a_number_written_with_set(store: SharedStore) -> None:
    await store.set("hits", b"41")
    assert await store.incr("hits") == 42


async def test_concurrent_incr_across_replicas_loses_no_update(store: SharedStore, peer: SharedStore) -> None:
    results: list[int] = []

    async def bump(replica: SharedStore) -> None:
        results.append(await replica.incr("counter", ttl=30))

    async with anyio.create_task_group() as tg:
        for index in range(100):
            tg.start_soon(bump, store if index % 2 else peer)

    assert sorted(results) == list(range(1, 101))


async def test_incr_ttl_is_set_when_the_counter_is_created(store: SharedStore) -> None:
    assert await store.incr("window", ttl=0.2) == 1
    await wait_until_gone(store, "window")
    assert await store.incr("window", ttl=0.2) == 1


async def test_incr_does_not_extend_the_ttl_of_an_existing_counter(store: SharedStore) -> None:
    await store.incr("window", ttl=0.3)
    # Were this TTL applied, the key would outlive the bounded wait below.
    await store.incr("window", ttl=3600)
    await wait_until_gone(store, "window")


async def test_incr_without_ttl_keeps_the_counter(store: SharedStore) -> None:
    await store.incr("forever")
    await store.set("control", b"x", ttl=0.1)
    await wait_until_gone(store, "control")
    assert await store.get("forever") == b"1"


async def test_incr_on_a_non_integer_raises_value_error(store: SharedStore) -> None:
    await store.set("name", b"alice")
    with pytest.raises(ValueError, match="integer"):
        await store.incr("name")
    assert await store.get("name") == b"alice"


# --- pub/sub -----------------------------------------------------------------------------------


async def test_subscriber_receives_a_message_published_after_subscribing(store: SharedStore) -> None:
    async with store.subscribe("events") as messages:
        await store.publish("events", b"hello")
        assert await next_message(messages) == ("events", b"hello")


async def test_message_published_on_one_replica_reaches_a_subscriber_on_another(
    store: SharedStore, peer: SharedStore
) -> None:
    async with store.subscribe("events") as messages:
        await peer.publish("events", b"from-peer")
        assert await next_message(messages) == ("events", b"from-peer")


async def test_messages_arrive_in_publish_order_with_their_channel(store: SharedStore, peer: SharedStore) -> None:
    async with store.subscribe("a", "b") as messages:
        for index in range(20):
            await peer.publish("a" if index % 2 else "b", str(index).encode())
        received = [await next_message(messages) for _ in range(20)]
    assert received == [("a" if i % 2 else "b", str(i).encode()) for i in range(20)]


async def test_subscriber_does_not_see_other_channels(store: SharedStore) -> None:
    async with store.subscribe("mine") as messages:
        await store.publish("other", b"not for me")
        await store.publish("mine", b"for me")
        assert await next_message(messages) == ("mine", b"for me")


async def test_message_published_before_subscribing_is_not_delivered(store: SharedStore) -> None:
    await store.publish("events", b"too early")
    async with store.subscribe("events") as messages:
        await store.publish("events", b"on time")
        assert await next_message(messages) == ("events", b"on time")


async def test_every_subscriber_gets_its_own_copy(store: SharedStore, peer: SharedStore) -> None:
    async with store.subscribe("fanout") as first, peer.subscribe("fanout") as second:
        await store.publish("fanout", b"m")
        assert await next_message(first) == ("fanout", b"m")
        assert await next_message(second) == ("fanout", b"m")


async def test_publish_without_subscribers_is_fine(store: SharedStore) -> None:
    await store.publish("nobody-listens", b"m")


async def test_leaving_a_subscription_does_not_affect_other_subscribers(store: SharedStore) -> None:
    async with store.subscribe("c") as staying:
        async with store.subscribe("c") as leaving:
            await store.publish("c", b"1")
            assert await next_message(leaving) == ("c", b"1")
        await store.publish("c", b"2")
        assert await next_message(staying) == ("c", b"1")
        assert await next_message(staying) == ("c", b"2")


async def test_an_error_inside_a_subscription_propagates_unchanged(store: SharedStore) -> None:
    with pytest.raises(LookupError, match="subscriber failed"):
        async with store.subscribe("events"):
            raise LookupError("subscriber failed")


# --- lifecycle ---------------------------------------------------------------------------------


async def test_ping_answers_while_the_store_is_open(store: SharedStore) -> None:
    assert await store.ping()


async def test_closing_the_store_ends_subscriptions_and_refuses_operations(store: SharedStore) -> None:
    async with store.subscribe("events") as messages:
        await store.aclose()
        with anyio.fail_after(WAIT):
            assert [message async for message in messages] == []
    assert not await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get("k")
    with pytest.raises(StoreUnavailable):
        await store.publish("events", b"m")
