"""What a method handler knows about the request it serves."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from patchbay.auth.principal import Principal
from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.channel import Era, ResponseChannel
from patchbay.mcp.session import LegacySession
from patchbay.routing.catalog import Catalog

if TYPE_CHECKING:
    from patchbay.runtime import Gateway


@dataclass(slots=True)
class AuditNote:
    """What the handler learned that the audit record should say."""

    tool_name: str | None = None
    tool_id: str | None = None
    status: str = "ok"
    error_code: int | None = None
    credential: str | None = None  # which upstream credential the call used: own / org / shared:NAME


@dataclass(slots=True)
class RequestContext:
    gateway: Gateway
    principal: Principal
    catalog: Catalog
    era: Era
    protocol_version: str
    client_capabilities: JSONObject
    channel: ResponseChannel
    session: LegacySession | None = None
    request_id: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    note: AuditNote = field(default_factory=AuditNote)
