"""Reading the audit trail back: filters, newest-first cursor pages, following, and retention."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit.events import AuditEvent
from patchbay.audit.objects import ObjectStore
from patchbay.errors import InvalidInput, NotFound
from patchbay.services.audit_logs import (
    LogQuery,
    follow_logs,
    get_log,
    list_logs,
    prune_logs,
    read_payload,
    resolve_query,
)
from patchbay.services.orgs import ensure_default_org
from patchbay.services.servers import create_server
from patchbay.services.users import create_user
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord, Organization
from tests.harness import running_gateway

pytestmark = pytest.mark.anyio

NOW_MS = int(time.time() * 1000)


def _id(ms: int) -> str:
    return f"{ms:012x}{os.urandom(10).hex()}"


def _event(age: timedelta = timedelta(0), **values: object) -> AuditEvent:
    when = datetime.fromtimestamp(NOW_MS / 1000, UTC) - age
    fields: dict[str, object] = {"org_id": "o" * 32, "method": "tools/call", "tool_name": "t", **values}
    return AuditEvent(id=_id(int(when.timestamp() * 1000)), created_at=when, **fields)  # type: ignore[arg-type]


async def _insert(sessionmaker: async_sessionmaker[AsyncSession], events: list[AuditEvent]) -> None:
    async with sessionmaker() as session:
        session.add_all(AuditRecord(**e.as_row()) for e in events)
        await session.commit()


async def test_pages_come_newest_first_and_together_hold_every_record_once(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    events = [_event(timedelta(seconds=i)) for i in range(25)]
    await _insert(sessionmaker, events)
    query = LogQuery(org_id="o" * 32)
    seen: list[str] = []
    cursor: str | None = None
    sizes = []
    async with sessionmaker() as session:
        while True:
            page = await list_logs(session, query=query, limit=10, cursor=cursor)
            seen += [r.id for r in page.records]
            sizes.append(len(page.records))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    assert sizes == [10, 10, 5]
    assert seen == sorted((e.id for e in events), reverse=True)


async def test_a_page_that_ends_exactly_at_the_last_record_has_no_next_cursor(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _insert(sessionmaker, [_event(timedelta(seconds=i)) for i in range(10)])
    async with sessionmaker() as session:
        page = await list_logs(session, query=LogQuery(org_id="o" * 32), limit=10)
    assert (len(page.records), page.next_cursor) == (10, None)


async def test_each_filter_narrows_the_listing_and_other_orgs_stay_invisible(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        server = await create_server(
            session, org_id=org.id, name="alpha", upstream_slugs=[], tools=None, plain_names=False
        )
        user = await create_user(session, email="bob@example.com", password=None, admin=False)
        other = Organization(name="Other", slug="other")
        session.add(other)
        await session.commit()
        org_id, server_id, user_id, other_id = org.id, server.id, user.id, other.id
    hour = timedelta(hours=1)
    base = {"org_id": org_id}
    events = {
        "server": _event(hour * 1, **base, server_id=server_id),
        "key": _event(hour * 2, **base, key_prefix="pb_abcdefghi"),
        "user": _event(hour * 3, **base, user_id=user_id),
        "tool": _event(hour * 4, **base, tool_name="fx__echo"),
        "status": _event(hour * 5, **base, status="denied"),
        "channel": _event(hour * 6, **base, channel="cli"),
        "old": _event(hour * 30, **base),
        "other_org": _event(hour * 1, org_id=other_id, server_id=server_id),
        "unowned": _event(hour * 1, org_id=None, event="auth.failed", status="denied"),
    }
    await _insert(sessionmaker, list(events.values()))

    async def ids(**filters: object) -> set[str]:
        async with sessionmaker() as session:
            query = await resolve_query(session, org_id=org_id, **filters)  # type: ignore[arg-type]
            page = await list_logs(session, query=query, limit=100)
        return {r.id for r in page.records}

    def named(*names: str) -> set[str]:
        return {events[n].id for n in names}

    assert await ids(server="alpha") == named("server")
    assert await ids(key="pb_abcdefghi") == named("key")
    assert await ids(user="BOB@example.com") == named("user")
    assert await ids(tool="fx__echo") == named("tool")
    assert await ids(status="denied") == named("status")
    assert await ids(channel="cli") == named("channel")
    now = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    assert await ids(since=now - hour * 2.5, until=now - hour * 0.5) == named("server", "key")
    everything = named("server", "key", "user", "tool", "status", "channel", "old")
    assert await ids() == everything
    assert await ids(include_unowned=True) == everything | named("unowned")
    assert await ids(include_unowned=True, status="denied") == named("status", "unowned")


@pytest.mark.parametrize(
    "bad",
    [{"status": "fine"}, {"channel": "smtp"}, {"since": datetime(2026, 2, 1), "until": datetime(2026, 1, 1)}],
)
async def test_bad_filters_are_clear_errors(
    sessionmaker: async_sessionmaker[AsyncSession], bad: dict[str, object]
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(InvalidInput):
            await resolve_query(session, org_id="o" * 32, **bad)  # type: ignore[arg-type]


async def test_a_bad_cursor_or_limit_or_unknown_name_is_a_clear_error(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session:
        with pytest.raises(InvalidInput, match="cursor"):
            await list_logs(session, query=LogQuery(org_id="o" * 32), cursor="'; drop table")
        with pytest.raises(InvalidInput, match="limit"):
            await list_logs(session, query=LogQuery(org_id="o" * 32), limit=0)
        with pytest.raises(NotFound):
            await resolve_query(session, org_id="o" * 32, server="nope")
        with pytest.raises(NotFound):
            await get_log(session, org_id=None, record_id="f" * 32)


async def test_following_yields_records_written_after_it_started(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    old = _event(timedelta(minutes=5))
    await _insert(sessionmaker, [old])
    stream = follow_logs(sessionmaker, query=LogQuery(org_id="o" * 32), after=old.id, poll_seconds=0.02)
    first = asyncio.ensure_future(anext(stream))
    fresh = [_event(timedelta(seconds=2)), _event(timedelta(seconds=1))]
    await _insert(sessionmaker, fresh)
    try:
        async with asyncio.timeout(10):
            got = [await first, await anext(stream)]
    finally:
        await stream.aclose()
    assert [r.id for r in got] == [e.id for e in fresh]


async def test_pruning_removes_old_records_and_their_payloads_and_keeps_the_rest(
    sessionmaker: async_sessionmaker[AsyncSession], object_store: ObjectStore
) -> None:
    old = [_event(timedelta(days=40 + i), payload_key=f"logs/old/{i}.json.gz") for i in range(5)]
    young = _event(timedelta(days=1), payload_key="logs/young/0.json.gz")
    for event in [*old, young]:
        assert event.payload_key is not None
        await object_store.put(event.payload_key, b"x")
    await _insert(sessionmaker, [*old, young, _event(timedelta(days=50))])
    cutoff = datetime.now(UTC) - timedelta(days=30)
    result = await prune_logs(sessionmaker, object_store, older_than=cutoff, batch=2)
    assert (result.records, result.payloads) == (6, 5)
    async with sessionmaker() as session:
        left = list((await session.scalars(select(AuditRecord.id))).all())
    assert left == [young.id]
    for event in old:
        assert event.payload_key is not None
        with pytest.raises(NotFound):
            await object_store.get(event.payload_key)
    assert await object_store.get("logs/young/0.json.gz") == b"x"
    assert await prune_logs(sessionmaker, object_store, older_than=cutoff) == type(result)(0, 0)


async def test_a_stored_payload_is_read_back_through_its_record(
    sessionmaker: async_sessionmaker[AsyncSession], object_store: ObjectStore
) -> None:
    from patchbay.audit.payloads import Captured, encode_payload

    # One second older than the record without a payload, which is therefore the newest.
    event = _event(timedelta(seconds=1), payload_key="logs/2026/01/01/o/s/r.json.gz")
    data = encode_payload(event, Captured(b'{"a":1}', b"", 0), cap=100)
    await object_store.put("logs/2026/01/01/o/s/r.json.gz", data)
    await _insert(sessionmaker, [event, _event()])
    async with sessionmaker() as session:
        record = await get_log(session, org_id="o" * 32, record_id=event.id)
        without = (await list_logs(session, query=LogQuery(org_id="o" * 32), limit=1)).records[0]
        with pytest.raises(NotFound):
            await get_log(session, org_id="x" * 32, record_id=event.id)
    assert (await read_payload(object_store, record=record))["request"] == {"a": 1}
    with pytest.raises(NotFound, match="no stored payload"):
        await read_payload(object_store, record=without)


async def test_the_gateway_prunes_old_records_by_itself_when_retention_is_set(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _insert(sessionmaker, [_event(timedelta(days=10)), _event(timedelta(days=3))])
    kept = settings.model_copy(update={"audit_retention_days": 7.0})
    async with running_gateway(kept):
        async with asyncio.timeout(20):
            while True:
                async with sessionmaker() as session:
                    count = await session.scalar(select(func.count()).select_from(AuditRecord))
                if count == 1:
                    break
                await asyncio.sleep(0.05)
