"""The audit event: what one call (or one security event) leaves behind, as a frozen value."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from patchbay.store.models import new_id, utcnow


class AuditEvent(NamedTuple):
    """One audit record before it is written; field for field, in order, the ``AuditRecord`` row.

    A tuple, because every request builds one: positionally that costs a third of a slotted
    dataclass built by keyword, and the tuple is already the row the writer binds (decision 0023).
    ``id`` and ``created_at`` have no default, so no event can go without them: ``fresh`` makes
    an event happening now.
    """

    id: str
    created_at: datetime
    org_id: str | None = None
    server_id: str | None = None
    api_key_id: str | None = None
    key_prefix: str | None = None
    user_id: str | None = None
    auth_method: str | None = None
    channel: str = "mcp"
    transport: str | None = None
    method: str | None = None
    tool_name: str | None = None
    tool_id: str | None = None
    http_status: int = 200
    error_code: int | None = None
    status: str = "ok"
    duration_ms: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    user_agent: str | None = None
    request_id: str | None = None
    event: str | None = None
    detail: str | None = None
    payload_key: str | None = None
    payload_stored_at: datetime | None = None
    credential: str | None = None  # own / org / shared:NAME: which upstream credential a call used

    def as_row(self) -> dict[str, Any]:
        """The column values for an INSERT into ``audit_records``."""
        return self._asdict()


FIELD_NAMES: tuple[str, ...] = AuditEvent._fields


def fresh(**fields: Any) -> AuditEvent:
    """An event that happens now: a new id, this moment, and ``fields``."""
    return AuditEvent(new_id(), utcnow(), **fields)
