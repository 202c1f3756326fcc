"""Direct execution of a registry tool (CLI ``exec`` today, ``POST /api/v1/tools/{id}/execute`` next).

The channel authenticates, this module finds the route the caller may use, and the
pipeline does the rest. An API key reaches a tool only as its server exposes it; a tool
key and the operator reach the tool itself.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit.events import AuditEvent
from patchbay.auth.principal import Principal
from patchbay.errors import InvalidInput, NotFound
from patchbay.pipeline import Caller, CallRecord, Operator
from patchbay.routing.catalog import ToolRoute, build_catalog
from patchbay.services.local_tools import find_tool, local_target


async def route_for(session: AsyncSession, *, caller: Caller, tool: str, secret: bytes) -> ToolRoute:
    """The route ``caller`` uses for ``tool`` (a name or an id); NotFound when it cannot see one."""
    if isinstance(caller, Principal):
        catalog = await build_catalog(session, server_id=caller.server_id, secret=secret)
        found = catalog.tools.get(tool) or next((r for r in catalog.tools.values() if r.tool_id == tool), None)
        if found is None:
            raise NotFound(f"the key's server has no tool {tool!r}")
        return found
    entry = await find_tool(session, org_id=caller.org_id, name=tool)
    if entry.status != "active":
        raise NotFound(f"tool {entry.name!r} is {entry.status}")
    return ToolRoute(
        exposed_name=entry.name,
        tool_id=entry.id,
        upstream=None,
        upstream_name=entry.name,
        definition=entry.definition,
        read_only=entry.read_only,
        local=await local_target(session, tool_id=entry.id),
        rate_limit=entry.rate_limit,
    )


def parse_arguments(*, base: str | None, pairs: list[str], schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments from a JSON object and ``key=value`` pairs (pairs win). A value is parsed as JSON
    unless the schema says the property is a string, so ``key=3`` is a number and ``expression=a.b`` text."""
    args: dict[str, Any] = {}
    if base is not None:
        try:
            parsed = orjson.loads(base)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"--json is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise InvalidInput("--json must be a JSON object of arguments")
        args.update(parsed)
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--arg {pair!r}: write KEY=VALUE")
        kind = (properties or {}).get(key, {}).get("type") if isinstance(properties, dict) else None
        if kind == "string":
            args[key] = raw
            continue
        try:
            args[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            args[key] = raw
    return args


def audit_event(record: CallRecord, *, bytes_in: int = 0, bytes_out: int = 0) -> AuditEvent:
    """The audit row of a call made outside the MCP endpoint (which writes its own)."""
    caller = record.caller
    key_id: str | None = None
    prefix: str | None = None
    user_id: str | None = None
    server_id: str | None = None
    if isinstance(caller, Principal):
        key_id, prefix, user_id, server_id = caller.key_id, caller.key_prefix, caller.user_id, caller.server_id
        method = "api_key"
    elif isinstance(caller, Operator):
        user_id, method = caller.user_id, "operator"
    else:
        key_id, prefix, method = caller.key_id, caller.prefix, "tool_key"
    return AuditEvent(
        org_id=caller.org_id,
        server_id=server_id,
        api_key_id=key_id,
        key_prefix=prefix,
        user_id=user_id,
        auth_method=method,
        channel=record.channel,
        method="tools/call",
        tool_name=record.route.exposed_name,
        tool_id=record.route.tool_id,
        http_status=record.http_status,
        status=record.status,
        duration_ms=record.duration_ms,
        bytes_in=bytes_in,
        bytes_out=bytes_out,
    )
