"""Direct execution of a registry tool: the CLI ``exec`` and ``POST /api/v1/tools/{id}/execute``.

The channel authenticates, this module finds the route the caller may use, and the
pipeline does the rest. An API key reaches a tool only as its server exposes it; a tool
key, a member and the operator reach the tool itself. An upstream tool is forwarded
through the routing pool with the connection of the user behind the call (the org's own
connection for a tool key), never with any credential the caller presented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit.events import AuditEvent
from patchbay.auth.principal import Principal
from patchbay.engine.runner import json_size
from patchbay.errors import InvalidInput, NotFound, UpstreamError
from patchbay.jsonrpc_types import JSONObject
from patchbay.pipeline import Caller, CallRecord, Channel, Executed, Forward, Operator, Pipeline, call_tool
from patchbay.policy.access import OrgAccess
from patchbay.policy.credentials import PERSONAL
from patchbay.routing.catalog import CatalogCache, ToolRoute, Upstream, build_catalog, load_upstream
from patchbay.routing.upstream.pool import UpstreamPool
from patchbay.services.local_tools import find_tool, local_target
from patchbay.store.models import LocalTool, ServerTemplate, Tool, new_id, utcnow

KeepAudit = Callable[[AuditEvent], Awaitable[None]]


async def route_for(
    session: AsyncSession, *, caller: Caller, tool: str, secret: bytes, catalogs: CatalogCache | None = None
) -> ToolRoute:
    """The route ``caller`` uses for ``tool`` (a name or an id); NotFound when it cannot see one.

    With ``catalogs`` (a gateway's cache, the one MCP uses) an API key's server catalog is
    built once per server revision instead of once per call."""
    if isinstance(caller, Principal):
        if catalogs is not None:
            catalog = await catalogs.get(caller.server_id, caller.server_revision)
        else:
            catalog = await build_catalog(session, server_id=caller.server_id, secret=secret)
        found = catalog.tools.get(tool) or next((r for r in catalog.tools.values() if r.tool_id == tool), None)
        if found is None:
            raise NotFound(f"the key's server has no tool {tool!r}")
        return found
    entry = await find_tool(session, org_id=caller.org_id, name=tool)
    if entry.status != "active":
        raise NotFound(f"tool {entry.name!r} is {entry.status}")
    upstream: Upstream | None = None
    if entry.template_id is not None:
        template = await session.scalar(select(ServerTemplate).where(ServerTemplate.id == entry.template_id))
        assert template is not None  # the foreign key cascades
        upstream = (
            await catalogs.upstream(session, template=template, org_id=caller.org_id)
            if catalogs is not None
            else await load_upstream(session, template=template, org_id=caller.org_id, secret=secret)
        )
    return ToolRoute(
        exposed_name=entry.name,
        tool_id=entry.id,
        upstream=upstream,
        upstream_name=entry.name,
        definition=entry.definition,
        read_only=entry.read_only,
        local=await local_target(session, tool_id=entry.id),
        rate_limit=entry.rate_limit,
    )


async def tool_org(session: AsyncSession, *, tool: str) -> str | None:
    """The org a tool id belongs to (a local tool's, or an org upstream's); None for a global upstream's
    tool or a name, which only a caller's own org can place."""
    owner = await session.scalar(select(LocalTool.org_id).where(LocalTool.tool_id == tool))
    if owner is None:
        owner = await session.scalar(
            select(ServerTemplate.org_id).join(Tool, Tool.template_id == ServerTemplate.id).where(Tool.id == tool)
        )
    return owner


def upstream_forward(
    pool: UpstreamPool, *, route: ToolRoute, caller: Caller, arguments: Any, timeout: float
) -> Forward | None:
    """Stage 4 for an upstream tool outside MCP: one ``tools/call`` through the pool (None for a local tool)."""
    upstream = route.upstream
    if upstream is None or route.local is not None:
        return None
    if isinstance(caller, Principal):
        spec = upstream.resolve(caller, caller.user_id).spec  # the credential the key chose
    elif isinstance(caller, OrgAccess | Operator) and caller.user_id is not None:
        spec = upstream.resolve(PERSONAL, caller.user_id).spec  # a person: their own values over the org's
    else:
        spec = upstream.spec  # a tool key has no owner: the org's connection

    async def forward() -> JSONObject:
        params: JSONObject = {"name": route.upstream_name, "arguments": arguments}
        response = await pool.request(spec, "tools/call", params, timeout=timeout)
        error = response.get("error")
        if error is not None:
            message = error.get("message", "") if isinstance(error, dict) else "a malformed error"
            raise UpstreamError(f"upstream '{upstream.slug}' refused the call: {message}")
        result = response.get("result")
        if not isinstance(result, dict):
            raise UpstreamError(f"upstream '{upstream.slug}' sent a result that is not an object")
        return result

    return forward


async def execute_direct(
    pipeline: Pipeline,
    *,
    channel: Channel,
    caller: Caller,
    route: ToolRoute,
    arguments: Any,
    pool: UpstreamPool | None,
    timeout: float,  # noqa: ASYNC109 - the upstream connection must know it to cancel upstream
    keep: KeepAudit,
) -> Executed:
    """One call outside MCP through the pipeline; its audit row is handed to ``keep`` whatever happens."""
    records: list[CallRecord] = []
    forward = upstream_forward(pool, route=route, caller=caller, arguments=arguments, timeout=timeout) if pool else None
    done: Executed | None = None
    try:
        done = await call_tool(
            pipeline,
            channel=channel,
            caller=caller,
            route=route,
            arguments=arguments,
            audit=records.append,
            forward=forward,
        )
        return done
    finally:
        size_in = json_size(arguments)
        size_out = json_size(done.value) if done is not None else 0
        for record in records:
            await keep(audit_event(record, bytes_in=size_in, bytes_out=size_out))


def arguments_object(text: str | bytes, *, what: str) -> dict[str, Any]:
    """The arguments of a call given as one JSON object (an empty text: none)."""
    if not text.strip():
        return {}
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidInput(f"{what} must be a JSON object of arguments")
    return parsed


def parse_arguments(*, base: str | None, pairs: list[str], schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments from a JSON object and ``key=value`` pairs (pairs win). A value is parsed as JSON
    unless the schema says the property is a string, so ``key=3`` is a number and ``expression=a.b`` text."""
    args: dict[str, Any] = {}
    if base is not None:
        args.update(arguments_object(base, what="--json"))
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
    elif isinstance(caller, OrgAccess):
        user_id, method = caller.user_id, "user"
    else:
        key_id, prefix, method = caller.key_id, caller.prefix, "tool_key"
    return AuditEvent(
        id=new_id(),
        created_at=utcnow(),
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
