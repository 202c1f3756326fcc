"""The audit trail read back: filtered listing (newest first, cursor pages), one record, its payload,
following new records, and pruning by age. Shared by ``patchbay logs`` and the REST API.

Record ids start with their creation time in milliseconds, so ``ORDER BY id`` is creation
order and the cursor is simply the last id of a page.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit.events import FIELD_NAMES, AuditEvent
from patchbay.audit.objects import ObjectStore
from patchbay.audit.payloads import decode_payload
from patchbay.errors import InvalidInput, NotFound
from patchbay.services.durations import parse_duration
from patchbay.services.keys import normalise_prefix
from patchbay.services.servers import get_server
from patchbay.services.users import get_user
from patchbay.store.models import AuditRecord, Server

MAX_PAGE = 1000
_ID = re.compile(r"[0-9a-f]{32}")
_STATUSES = frozenset({"ok", "error", "denied"})
_CHANNELS = frozenset({"mcp", "api", "cli"})


@dataclass(frozen=True, kw_only=True)
class LogQuery:
    """Which records to list; names are resolved to ids by ``resolve_query``."""

    org_id: str
    server_id: str | None = None
    key_prefix: str | None = None
    user_id: str | None = None
    tool: str | None = None
    status: str | None = None
    channel: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    include_unowned: bool = False  # gateway-wide events with no org (a failed auth with an unknown key)


@dataclass(frozen=True)
class LogPage:
    """One page, newest first; ``next_cursor`` fetches the next (older) page, None at the end."""

    records: list[AuditEvent]
    next_cursor: str | None


async def resolve_query(
    session: AsyncSession,
    *,
    org_id: str,
    server: str | None = None,
    key: str | None = None,
    user: str | None = None,
    tool: str | None = None,
    status: str | None = None,
    channel: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    include_unowned: bool = False,
) -> LogQuery:
    """Check the filters and turn names (server slug, user email, key or prefix) into ids."""
    if status is not None and status not in _STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(sorted(_STATUSES))}, not {status!r}")
    if channel is not None and channel not in _CHANNELS:
        raise InvalidInput(f"channel must be one of {', '.join(sorted(_CHANNELS))}, not {channel!r}")
    since, until = _utc(since), _utc(until)
    if since is not None and until is not None and since >= until:
        raise InvalidInput("--since must be before --until")
    server_id = (await get_server(session, org_id=org_id, name_or_slug=server)).id if server else None
    user_id = (await get_user(session, email=user)).id if user else None
    return LogQuery(
        org_id=org_id,
        server_id=server_id,
        key_prefix=normalise_prefix(key) if key else None,
        user_id=user_id,
        tool=tool,
        status=status,
        channel=channel,
        since=since,
        until=until,
        include_unowned=include_unowned,
    )


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _where(query: LogQuery) -> list[ColumnElement[bool]]:
    owned = AuditRecord.org_id == query.org_id
    clauses: list[ColumnElement[bool]] = [or_(owned, AuditRecord.org_id.is_(None)) if query.include_unowned else owned]
    for column, value in (
        (AuditRecord.server_id, query.server_id),
        (AuditRecord.key_prefix, query.key_prefix),
        (AuditRecord.user_id, query.user_id),
        (AuditRecord.tool_name, query.tool),
        (AuditRecord.status, query.status),
        (AuditRecord.channel, query.channel),
    ):
        if value is not None:
            clauses.append(column == value)
    if query.since is not None:
        clauses.append(AuditRecord.created_at >= query.since)
    if query.until is not None:
        clauses.append(AuditRecord.created_at < query.until)
    return clauses


def to_event(row: AuditRecord) -> AuditEvent:
    """A stored row as the frozen value every other stage uses (times made UTC-aware)."""
    values: dict[str, Any] = {name: getattr(row, name) for name in FIELD_NAMES}
    values["created_at"] = _utc(values["created_at"])
    values["payload_stored_at"] = _utc(values["payload_stored_at"])
    return AuditEvent(**values)


def _check_cursor(cursor: str) -> str:
    if not _ID.fullmatch(cursor):
        raise InvalidInput("not a valid cursor: pass the next_cursor of the previous page")
    return cursor


async def list_logs(session: AsyncSession, *, query: LogQuery, limit: int = 50, cursor: str | None = None) -> LogPage:
    """One page of records matching ``query``, newest first, older than ``cursor`` when given."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}")
    clauses = _where(query)
    if cursor is not None:
        clauses.append(AuditRecord.id < _check_cursor(cursor))
    stmt = select(AuditRecord).where(and_(*clauses)).order_by(AuditRecord.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(stmt)).all())
    more = len(rows) > limit
    records = [to_event(r) for r in rows[:limit]]
    return LogPage(records, records[-1].id if more and records else None)


async def follow_logs(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    query: LogQuery,
    after: str | None,
    poll_seconds: float = 1.0,
    batch: int = 500,
) -> AsyncGenerator[AuditEvent, None]:
    """Records newer than ``after`` as they are written, oldest first, until the caller stops."""
    last = _check_cursor(after) if after is not None else None
    while True:
        clauses = _where(query)
        if last is not None:
            clauses.append(AuditRecord.id > last)
        stmt = select(AuditRecord).where(and_(*clauses)).order_by(AuditRecord.id).limit(batch)
        async with sessionmaker() as session:
            rows = list((await session.scalars(stmt)).all())
        for row in rows:
            last = row.id
            yield to_event(row)
        if len(rows) < batch:
            await asyncio.sleep(poll_seconds)


async def get_log(session: AsyncSession, *, org_id: str | None, record_id: str) -> AuditEvent:
    """One record by id; ``org_id`` None means any org (the operator's CLI)."""
    if not _ID.fullmatch(record_id):
        raise InvalidInput(f"not a record id: {record_id!r}")
    row = await session.get(AuditRecord, record_id)
    if row is None or (org_id is not None and row.org_id != org_id):
        raise NotFound(f"no audit record {record_id}")
    return to_event(row)


async def read_payload(store: ObjectStore, *, record: AuditEvent) -> Any:
    """The stored (redacted) request and response of ``record``."""
    if record.payload_key is None:
        raise NotFound(f"audit record {record.id} has no stored payload")
    return decode_payload(await store.get(record.payload_key))


@dataclass(frozen=True)
class PruneResult:
    records: int
    payloads: int


def retention_age(older_than: str | None, *, default_days: float | None) -> timedelta:
    """``--older-than`` / ``older_than`` as an age, else the configured retention; InvalidInput without either."""
    if older_than is not None:
        return parse_duration(older_than)
    if default_days is not None:
        return timedelta(days=default_days)
    raise InvalidInput("give an age (e.g. 30d) or set PATCHBAY_AUDIT_RETENTION_DAYS")


async def prune_logs(
    sessionmaker: async_sessionmaker[AsyncSession], store: ObjectStore, *, older_than: datetime, batch: int = 1000
) -> PruneResult:
    """Delete records created before ``older_than`` and their payloads, a batch per transaction.

    Payloads go first: if the store fails, the records stay and the next run tries again, so
    no payload is ever left without its record.
    """
    cutoff = _utc(older_than)
    records = payloads = 0
    while True:
        async with sessionmaker() as session:
            rows = (
                await session.execute(
                    select(AuditRecord.id, AuditRecord.payload_key)
                    .where(AuditRecord.created_at < cutoff)
                    .order_by(AuditRecord.id)
                    .limit(batch)
                )
            ).all()
            if not rows:
                return PruneResult(records, payloads)
            keys = [key for _id, key in rows if key is not None]
            if keys:
                await store.delete(keys)
            await session.execute(delete(AuditRecord).where(AuditRecord.id.in_([row_id for row_id, _ in rows])))
            await session.commit()
        records += len(rows)
        payloads += len(keys)


async def server_slugs(session: AsyncSession, *, org_id: str) -> dict[str, str]:
    """Server id → slug for the org, to show records by name."""
    rows = await session.execute(select(Server.id, Server.slug).where(Server.org_id == org_id))
    return {server_id: slug for server_id, slug in rows.all()}
