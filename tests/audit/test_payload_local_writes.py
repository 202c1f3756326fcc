"""Local payload files: written on the event loop while the folder is quick, in a thread when it is slow."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit import payloads
from patchbay.audit.events import AuditEvent, fresh
from patchbay.audit.objects import LocalObjectStore
from patchbay.audit.payloads import Captured, PayloadWriter, decode_payload, payload_key
from patchbay.audit.writer import AuditWriter
from patchbay.store.models import AuditRecord

pytestmark = pytest.mark.anyio

REQUEST = (
    b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fx__echo","arguments":{"api_key":"s3cr3t"}}}'
)
RESPONSE = b'{"jsonrpc":"2.0","id":1,"result":{"content":[]}}'


class RecordingStore(LocalObjectStore):
    """A local store that notes which thread wrote each batch of files."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.threads: list[int] = []

    def put_many_sync(self, items: Sequence[tuple[str, bytes]]) -> list[Exception | None]:
        self.threads.append(threading.get_ident())
        return super().put_many_sync(items)


@pytest.fixture
async def audit(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AuditWriter]:
    writer = AuditWriter(sessionmaker, flush_interval=0.01)
    await writer.start()
    try:
        yield writer
    finally:
        await writer.aclose()


async def _store_all(store: LocalObjectStore, audit: AuditWriter, captured: Captured, n: int) -> list[AuditEvent]:
    writer = PayloadWriter(store, audit, cap=1_000_000, linger=0)
    await writer.start()
    events = [fresh(method="tools/call", tool_name="fx__echo", org_id="org1", server_id="srv1") for _ in range(n)]
    for event in events:  # no await suspends here: the writer takes them as one batch
        await writer.submit(event, captured)
    await writer.aclose()
    await audit.flush()
    await store.aclose()
    return events


async def _payload_keys(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, str | None]:
    async with sessionmaker() as session:
        return {r.id: r.payload_key for r in (await session.scalars(select(AuditRecord))).all()}


async def test_payloads_are_written_on_the_event_loop_while_the_folder_is_quick(
    tmp_path: Path, audit: AuditWriter, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    store = RecordingStore(tmp_path / "objects")
    events = await _store_all(store, audit, Captured(REQUEST, RESPONSE, len(RESPONSE), "application/json"), 20)
    assert set(store.threads) == {threading.get_ident()}
    assert len(store.threads) == 3  # 20 payloads, 8 at a time between turns of the loop
    keys = await _payload_keys(sessionmaker)
    for event in events:
        assert keys[event.id] == payload_key(event)
        document = decode_payload((store.root / payload_key(event)).read_bytes())
        assert document["request"]["params"]["arguments"]["api_key"] == "[redacted]"


async def test_a_slow_folder_sends_the_writing_to_the_store_thread(
    tmp_path: Path, audit: AuditWriter, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(payloads, "_SLOW_WRITE", 0.0)  # any write counts as slow
    store = RecordingStore(tmp_path / "objects")
    events = await _store_all(store, audit, Captured(REQUEST, RESPONSE, len(RESPONSE), "application/json"), 40)
    loop_thread = threading.get_ident()
    # Three slow chunks in a row (one could be the scheduler), then the thread for the rest.
    assert store.threads[:3] == [loop_thread] * 3
    assert len(store.threads) == 5
    assert all(t != loop_thread for t in store.threads[3:])
    keys = await _payload_keys(sessionmaker)
    assert all(keys[e.id] == payload_key(e) for e in events)


async def test_large_bodies_are_encoded_and_written_in_the_store_thread(
    tmp_path: Path, audit: AuditWriter, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    store = RecordingStore(tmp_path / "objects")
    big = b'{"jsonrpc":"2.0","id":1,"result":{"text":"' + b"x" * 100_000 + b'"}}'
    events = await _store_all(store, audit, Captured(REQUEST, big, len(big), "application/json"), 2)
    assert store.threads
    assert threading.get_ident() not in store.threads
    keys = await _payload_keys(sessionmaker)
    assert all(keys[e.id] == payload_key(e) for e in events)
    document = decode_payload((store.root / payload_key(events[0])).read_bytes())
    assert len(document["response"]["result"]["text"]) == 100_000
