"""``/api/v1/orgs/{org}/logs``: the org's audit trail, through the service ``patchbay logs`` uses.

Admins read every record of the org; members read the records of their own calls and keys
(``policy.access.log_user_scope``). Lists are newest first; ``next_cursor`` fetches the next,
older page. ``/stream`` follows new records as server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from patchbay.audit.events import AuditEvent
from patchbay.errors import InvalidInput
from patchbay.policy.access import Action, OrgAccess, authorize, authorize_own, log_user_scope
from patchbay.services.audit_logs import (
    LogQuery,
    follow_logs,
    get_log,
    list_logs,
    read_payload,
    resolve_query,
    server_slugs,
)
from patchbay.services.members import get_member_by_email
from patchbay.services.paging import CURSOR_PATTERN, DEFAULT_LIMIT, ID_PATTERN, MAX_LIMIT
from patchbay.web.api.deps import Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs/{org}/logs", tags=["logs"], responses=ERROR_RESPONSES)

RecordRef = Annotated[str, Path(pattern=ID_PATTERN, description="Audit record id.")]
ReadLogs = Annotated[OrgAccess, Requires(Action.LOGS_OWN)]
POLL_SECONDS = 1.0  # how often a stream looks for new records
HEARTBEAT_SECONDS = 15.0  # an SSE comment while idle, so proxies keep the stream and a gone client is noticed


class LogOut(BaseModel):
    id: str
    created_at: Timestamp
    server_id: str | None
    server: str | None
    api_key_id: str | None
    key_prefix: str | None
    user_id: str | None
    auth_method: str | None
    channel: str
    transport: str | None
    method: str | None
    tool_name: str | None
    tool_id: str | None
    http_status: int
    error_code: int | None
    status: str
    duration_ms: float
    bytes_in: int
    bytes_out: int
    user_agent: str | None
    request_id: str | None
    event: str | None
    detail: str | None
    payload_stored: bool
    payload_stored_at: Timestamp | None


def log_out(record: AuditEvent, servers: dict[str, str]) -> LogOut:
    """A record for the wire; the payload's object key stays inside (fetch it via ``/payload``)."""
    return LogOut(
        id=record.id,
        created_at=record.created_at,
        server_id=record.server_id,
        server=servers.get(record.server_id or ""),
        api_key_id=record.api_key_id,
        key_prefix=record.key_prefix,
        user_id=record.user_id,
        auth_method=record.auth_method,
        channel=record.channel,
        transport=record.transport,
        method=record.method,
        tool_name=record.tool_name,
        tool_id=record.tool_id,
        http_status=record.http_status,
        error_code=record.error_code,
        status=record.status,
        duration_ms=record.duration_ms,
        bytes_in=record.bytes_in,
        bytes_out=record.bytes_out,
        user_agent=record.user_agent,
        request_id=record.request_id,
        event=record.event,
        detail=record.detail,
        payload_stored=record.payload_key is not None,
        payload_stored_at=record.payload_stored_at,
    )


@dataclass(frozen=True, slots=True)
class Filters:
    """The filters the log routes share (query parameters)."""

    server: str | None = None
    key: str | None = None
    user: str | None = None
    tool: str | None = None
    status: str | None = None
    channel: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filters(
    server: Annotated[str | None, Query(max_length=200, description="Server slug or name.")] = None,
    key: Annotated[str | None, Query(max_length=200, description="API key prefix.")] = None,
    user: Annotated[str | None, Query(max_length=320, description="Key owner's / caller's email.")] = None,
    tool: Annotated[str | None, Query(max_length=200, description="Tool name as the server exposes it.")] = None,
    status: Annotated[str | None, Query(max_length=20, description="ok, error or denied.")] = None,
    channel: Annotated[str | None, Query(max_length=20, description="mcp, api or cli.")] = None,
    since: Annotated[datetime | None, Query(description="Records at or after this time (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Records before this time (ISO 8601).")] = None,
) -> Filters:
    return Filters(
        server=server, key=key, user=user, tool=tool, status=status, channel=channel, since=since, until=until
    )


LogFilters = Annotated[Filters, Depends(_filters)]


async def _query(session: Db, access: OrgAccess, filters: Filters) -> LogQuery:
    """The filters as a query, narrowed to the caller's own records unless they may read all."""
    own = log_user_scope(access)
    user_id = own
    if filters.user is not None:  # members of this org only: no probing for accounts elsewhere
        user_id = (await get_member_by_email(session, org_id=access.org_id, email=filters.user)).id
        if own is not None and user_id != own:
            authorize(access, Action.LOGS_ANY)
    query = await resolve_query(
        session,
        org_id=access.org_id,
        server=filters.server,
        key=filters.key,
        tool=filters.tool,
        status=filters.status,
        channel=filters.channel,
        since=filters.since,
        until=filters.until,
    )
    return replace(query, user_id=user_id)


@router.get("", summary="Audit records, newest first (admins: the org's; members: their own)")
async def list_(
    access: ReadLogs,
    session: Db,
    filters: LogFilters,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Records per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="The next_cursor of the previous (newer) page.")
    ] = None,
) -> PageOut[LogOut]:
    page = await list_logs(session, query=await _query(session, access, filters), limit=limit, cursor=cursor)
    servers = await server_slugs(session, org_id=access.org_id)
    return PageOut(items=[log_out(r, servers) for r in page.records], next_cursor=page.next_cursor)


def _sse(record: AuditEvent, servers: dict[str, str]) -> bytes:
    data = orjson.dumps(log_out(record, servers).model_dump(mode="json"))
    return b"id: " + record.id.encode() + b"\nevent: record\ndata: " + data + b"\n\n"


async def _stream(gw: Gw, query: LogQuery, after: str | None, servers: dict[str, str]) -> AsyncIterator[bytes]:
    records = follow_logs(gw.sessionmaker, query=query, after=after, poll_seconds=POLL_SECONDS)
    yield b": following\n\n"
    pending: asyncio.Future[AuditEvent] = asyncio.ensure_future(anext(records))
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=HEARTBEAT_SECONDS)
            if not done:
                yield b": keepalive\n\n"
                continue
            record = pending.result()
            if record.server_id is not None and record.server_id not in servers:
                async with gw.sessionmaker() as session:  # a server made after the stream began
                    servers.update(await server_slugs(session, org_id=query.org_id))
            yield _sse(record, servers)
            pending = asyncio.ensure_future(anext(records))
    finally:
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await pending
        await records.aclose()


@router.get(
    "/stream",
    summary="Follow new audit records as server-sent events (event 'record', id = record id)",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "One 'record' event per new record."}},
)
async def stream(
    access: ReadLogs,
    session: Db,
    gw: Gw,
    filters: LogFilters,
    after: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="Start after this record id (default: from now).")
    ] = None,
    last_event_id: Annotated[
        str | None, Header(max_length=64, description="Set by EventSource on reconnect; wins over 'after'.")
    ] = None,
) -> StreamingResponse:
    query = await _query(session, access, filters)
    start = last_event_id or after
    if start is None:
        newest = await list_logs(session, query=query, limit=1)
        start = newest.records[0].id if newest.records else None
    elif not _is_id(start):
        raise InvalidInput("Last-Event-ID is not a record id this stream sent")
    servers = await server_slugs(session, org_id=access.org_id)
    headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
    return StreamingResponse(_stream(gw, query, start, servers), media_type="text/event-stream", headers=headers)


def _is_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


async def _record(session: Db, access: OrgAccess, record_id: str) -> AuditEvent:
    record = await get_log(session, org_id=access.org_id, record_id=record_id)
    authorize_own(access, owner_id=record.user_id or "", own=Action.LOGS_OWN, any_=Action.LOGS_ANY)
    return record


@router.get("/{record_id}", summary="One audit record")
async def get(record_id: RecordRef, access: ReadLogs, session: Db) -> LogOut:
    record = await _record(session, access, record_id)
    return log_out(record, await server_slugs(session, org_id=access.org_id))


@router.get("/{record_id}/payload", summary="The record's stored request and response (redacted JSON)")
async def payload(record_id: RecordRef, access: ReadLogs, session: Db, gw: Gw) -> Any:
    record = await _record(session, access, record_id)
    return await read_payload(gw.objects, record=record)
