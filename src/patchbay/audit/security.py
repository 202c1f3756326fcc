"""Security events (keys created or revoked, failed authentication, permission changes).

One small API for every part of the gateway: build the event with ``security_event``, then
``record`` it inside the caller's database transaction (so a rolled-back change leaves no
event) or ``submit`` it to the running gateway's audit writer (for the request path).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit.context import current_request_id
from patchbay.audit.events import AuditEvent
from patchbay.audit.writer import AuditWriter
from patchbay.store.models import AuditRecord, new_id, utcnow

__all__ = ["AuditEvent", "Channel", "SecurityEventName", "record", "security_event", "submit"]

SecurityEventName = Literal[
    "key.created",
    "key.revoked",
    "auth.failed",
    "permission.changed",
    "credential.changed",
    "payload_capture.changed",
    "login",
    "login.failed",
    "tool.quarantined",
    "tool.approved",
    "oauth.connected",
    "oauth.disconnected",
    "oauth.refresh_failed",
    "oauth.callback_rejected",
    "tool.rejected",
]
Channel = Literal["mcp", "api", "cli"]


def security_event(
    *,
    event: SecurityEventName,
    channel: Channel,
    status: str = "ok",
    org_id: str | None = None,
    server_id: str | None = None,
    api_key_id: str | None = None,
    key_prefix: str | None = None,
    user_id: str | None = None,
    auth_method: str | None = None,
    tool_id: str | None = None,
    tool_name: str | None = None,
    http_status: int = 200,
    user_agent: str | None = None,
    transport: str | None = None,
    detail: str | None = None,
) -> AuditEvent:
    """An audit event describing one security event; the request id is taken from the context."""
    return AuditEvent(
        id=new_id(),
        created_at=utcnow(),
        event=event,
        channel=channel,
        status=status,
        org_id=org_id,
        server_id=server_id,
        api_key_id=api_key_id,
        key_prefix=key_prefix,
        user_id=user_id,
        auth_method=auth_method,
        tool_id=tool_id,
        tool_name=tool_name,
        http_status=http_status,
        user_agent=user_agent,
        transport=transport,
        detail=detail,
        request_id=current_request_id(),
    )


def record(session: AsyncSession, event: AuditEvent) -> AuditEvent:
    """Add ``event`` to the caller's transaction: it is stored exactly when the change is."""
    session.add(AuditRecord(**event.as_row()))
    return event


async def submit(writer: AuditWriter, event: AuditEvent) -> AuditEvent:
    """Hand ``event`` to the audit writer (batched, off the request path)."""
    if not writer.submit_nowait(event):
        await writer.submit(event)
    return event
