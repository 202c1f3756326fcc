"""Token buckets in the shared store: the same sentences hold for memory and Redis."""

from __future__ import annotations

import anyio
import pytest

from patchbay.state import SharedStore
from tests.state.conftest import Replicas

pytestmark = pytest.mark.anyio


async def test_a_new_bucket_is_full_then_refuses_with_the_time_to_the_next_token(store: SharedStore) -> None:
    rate = 0.5  # one token every two seconds
    assert [await store.take_token("b:full", rate=rate, capacity=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = await store.take_token("b:full", rate=rate, capacity=3)
    assert 1.5 < wait <= 2.0


async def test_buckets_are_independent_per_key(store: SharedStore) -> None:
    assert await store.take_token("b:one", rate=0.1, capacity=1) == 0.0
    assert await store.take_token("b:one", rate=0.1, capacity=1) > 0
    assert await store.take_token("b:two", rate=0.1, capacity=1) == 0.0


async def test_a_bucket_refills_at_its_rate(store: SharedStore) -> None:
    assert await store.take_token("b:refill", rate=50.0, capacity=1) == 0.0
    wait = await store.take_token("b:refill", rate=50.0, capacity=1)
    assert 0 < wait <= 0.02
    with anyio.fail_after(5):
        # Refilling has no event to wait on; poll within the bound.
        while await store.take_token("b:refill", rate=50.0, capacity=1) > 0:  # noqa: ASYNC110
            await anyio.sleep(0.005)


async def test_every_replica_draws_from_the_same_bucket(replicas: Replicas) -> None:
    other = replicas.open_peer()  # closed with the namespace
    assert await replicas.store.take_token("b:shared", rate=0.01, capacity=2) == 0.0
    assert await other.take_token("b:shared", rate=0.01, capacity=2) == 0.0
    assert await replicas.store.take_token("b:shared", rate=0.01, capacity=2) > 0
    assert await other.take_token("b:shared", rate=0.01, capacity=2) > 0


async def test_a_bucket_that_could_never_refill_is_refused(store: SharedStore) -> None:
    with pytest.raises(ValueError, match="token bucket"):
        await store.take_token("b:bad", rate=0, capacity=1)
    with pytest.raises(ValueError, match="token bucket"):
        await store.take_token("b:bad", rate=1, capacity=0.5)
