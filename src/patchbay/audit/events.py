"""The audit event: what one call (or one security event) leaves behind, as a frozen value."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime
from operator import attrgetter
from typing import Any

from patchbay.store.models import new_id, utcnow


# Not frozen, unlike other stage values: a frozen dataclass sets each of these fields through
# object.__setattr__, which doubled the cost of the one event every request builds. Nothing
# changes an event after it is made.
@dataclass(slots=True, kw_only=True)
class AuditEvent:
    """One audit record before it is written; field for field the ``AuditRecord`` row."""

    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)
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
        return {name: getattr(self, name) for name in FIELD_NAMES}

    def values(self) -> tuple[Any, ...]:
        """The column values in ``FIELD_NAMES`` order (one C call: this runs once per request)."""
        return _values(self)


FIELD_NAMES = tuple(f.name for f in fields(AuditEvent))
_values = attrgetter(*FIELD_NAMES)
