"""Legacy sessions in the shared store: each use keeps a session alive without a write per request."""

from __future__ import annotations

from dataclasses import replace

import pytest

from patchbay.mcp.session import SessionStore
from patchbay.state.memory import MemoryStore

pytestmark = pytest.mark.anyio


class CountingStore(MemoryStore):
    """The in-process store, counting TTL renewals."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals = 0

    async def expire(self, key: str, ttl: float) -> bool:
        self.renewals += 1
        return await super().expire(key, ttl)


async def test_a_busy_session_is_not_renewed_on_every_request() -> None:
    store = CountingStore()
    sessions = SessionStore(store, ttl=3600)
    session = await sessions.create(key_id="k", server_id="s", protocol_version="2025-11-25", capabilities={}, info={})
    for _ in range(1000):
        loaded = await sessions.load(session.id)
        assert loaded is not None
        assert loaded.key_id == "k"
    # Created a moment ago with its full TTL: nothing to renew yet.
    assert store.renewals == 0
    await store.aclose()


async def test_a_session_known_to_another_replica_is_renewed_on_its_first_use_here() -> None:
    store = CountingStore()
    creator, other = SessionStore(store, ttl=3600), SessionStore(store, ttl=3600)
    session = await creator.create(key_id="k", server_id="s", protocol_version="2025-11-25", capabilities={}, info={})
    for _ in range(10):
        assert await other.load(session.id) is not None
    assert store.renewals == 1
    await store.aclose()


async def test_a_deleted_session_is_gone_for_every_replica() -> None:
    store = MemoryStore()
    one, two = SessionStore(store, ttl=3600), SessionStore(store, ttl=3600)
    session = await one.create(key_id="k", server_id="s", protocol_version="2025-11-25", capabilities={}, info={})
    assert await two.load(session.id) is not None
    await one.delete(session.id)
    assert await one.load(session.id) is None
    assert await two.load(session.id) is None
    await store.aclose()


async def test_a_session_is_parsed_once_and_a_change_by_another_replica_is_seen_at_once() -> None:
    store = MemoryStore()
    one, two = SessionStore(store, ttl=3600), SessionStore(store, ttl=3600)
    session = await one.create(key_id="k", server_id="s", protocol_version="2025-11-25", capabilities={}, info={})
    first = await two.load(session.id)
    assert first is not None
    assert await two.load(session.id) is first  # unchanged bytes: the parsed session is reused
    await one.save(replace(session, log_level="debug", subscriptions=["file:///a"]))
    changed = await two.load(session.id)
    assert changed is not None and changed is not first
    assert changed.log_level == "debug"
    assert changed.subscriptions == ["file:///a"]
    assert first.log_level is None  # what an earlier request holds does not change under it
    await store.aclose()
