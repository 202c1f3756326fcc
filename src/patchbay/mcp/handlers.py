"""One handler per MCP method. Each takes the request context and params, returns a result.

Upstream results pass through unchanged except for the names the gateway
rewrites (tool and prompt names) and the envelope fields a 2026-07-28 client
expects on every result.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

import orjson

from patchbay.errors import (
    ConnectionRequired,
    Forbidden,
    PatchbayError,
    RateLimited,
    StoreUnavailable,
    UpstreamError,
    UpstreamTimeout,
)
from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp import compact
from patchbay.mcp.context import RequestContext
from patchbay.mcp.param_headers import mismatch
from patchbay.mcp.protocol import (
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    META_CLIENT_CAPABILITIES,
    META_CLIENT_INFO,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    MODERN_VERSIONS,
    RATE_LIMITED,
    REQUEST_TIMEOUT,
    RESOURCE_NOT_FOUND,
    SERVER_INFO,
    URL_ELICITATION_REQUIRED,
    RpcError,
)
from patchbay.pipeline import Forward, call_tool, failure_status
from patchbay.routing.catalog import Upstream

logger = logging.getLogger(__name__)

Handler = Callable[[RequestContext, JSONObject], Coroutine[Any, Any, JSONObject]]
_DROPPED_META = (META_PROTOCOL_VERSION, META_CLIENT_INFO)


# --- forwarding -----------------------------------------------------------------------------


def upstream_params(ctx: RequestContext, params: JSONObject) -> JSONObject:
    """The client's params as an upstream should see them.

    The client's own version and identity stay here; what it can do (its capabilities) and
    the log level it asked for travel on, so a 2026-07-28 upstream decides as it would for
    the client directly. Progress tokens are made unique per connection by the pool.
    """
    meta = params.get("_meta")
    clean = {k: v for k, v in meta.items() if k not in _DROPPED_META} if isinstance(meta, dict) else {}
    clean[META_CLIENT_CAPABILITIES] = ctx.client_capabilities
    if META_LOG_LEVEL not in clean and ctx.session is not None and ctx.session.log_level:
        clean[META_LOG_LEVEL] = ctx.session.log_level
    return {**params, "_meta": clean}


async def forward(ctx: RequestContext, upstream: Upstream, method: str, params: JSONObject) -> JSONObject:
    """Send one request upstream and return its result, or raise its error as the client's error."""
    gw = ctx.gateway
    try:
        chosen = upstream.resolve(ctx.principal, ctx.principal.user_id)
        ctx.note.credential = chosen.credential
        if chosen.bearer is not None:
            await chosen.bearer.require()
        response = await gw.pool.request(
            chosen.spec,
            method,
            params,
            timeout=gw.settings.upstream_timeout,
            sink=ctx.channel,
        )
    except UpstreamTimeout as exc:
        raise RpcError(REQUEST_TIMEOUT, str(exc)) from exc
    except ConnectionRequired as exc:
        raise connection_required(exc) from None
    except UpstreamError as exc:
        raise RpcError(INTERNAL_ERROR, str(exc)) from exc
    error = response.get("error")
    if error is not None:
        if not isinstance(error, dict):
            raise RpcError(INTERNAL_ERROR, f"upstream '{upstream.slug}' sent a malformed error")
        raise RpcError(int(error.get("code", INTERNAL_ERROR)), str(error.get("message", "")), error.get("data"))
    result = response.get("result")
    if not isinstance(result, dict):
        raise RpcError(INTERNAL_ERROR, f"upstream '{upstream.slug}' sent a result that is not an object")
    if ctx.era == "legacy" and result.get("resultType") == "input_required":
        return await _satisfy_for_legacy(ctx, upstream, method, params, result)
    return result


def connection_required(exc: ConnectionRequired) -> RpcError:
    """The user must connect (or reconnect) an OAuth upstream: the error carries the link to open."""
    elicitation = {"mode": "url", "elicitationId": exc.connect_url, "url": exc.connect_url, "message": str(exc)}
    return RpcError(URL_ELICITATION_REQUIRED, str(exc), {"connectUrl": exc.connect_url, "elicitations": [elicitation]})


async def pending_upstreams(ctx: RequestContext) -> set[str]:
    """Template ids of this server's OAuth upstreams whose token the caller's key lacks (pending for them)."""
    pending: set[str] = set()
    for up in ctx.catalog.upstreams:
        if up.credentials is None or not up.credentials.oauth:
            continue
        bearer = up.resolve(ctx.principal, ctx.principal.user_id).bearer
        if bearer is not None and not await bearer.connected():
            pending.add(up.template_id)
    return pending


async def _satisfy_for_legacy(
    ctx: RequestContext, upstream: Upstream, method: str, params: JSONObject, result: JSONObject
) -> JSONObject:
    """A 2026-07-28 upstream asked for input: ask the legacy client with real requests, then retry."""
    for _ in range(10):
        responses: JSONObject = {}
        for key, req in (result.get("inputRequests") or {}).items():
            answer = await ctx.channel.request({"jsonrpc": "2.0", "id": key, **req})
            if "error" in answer:
                err = answer["error"]
                raise RpcError(int(err.get("code", INTERNAL_ERROR)), str(err.get("message", "")))
            responses[key] = answer.get("result")
        retry = dict(params)
        if responses:
            retry["inputResponses"] = responses
        if result.get("requestState") is not None:
            retry["requestState"] = result["requestState"]
        result = await forward(ctx, upstream, method, retry)
        if result.get("resultType") != "input_required":
            return result
    raise RpcError(INTERNAL_ERROR, f"upstream '{upstream.slug}' asked for input too many times")


# --- cursors over several upstreams ---------------------------------------------------------


def _encode_cursor(index: int, cursor: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([index, cursor])).decode()


def _decode_cursor(cursor: Any) -> tuple[int, Any]:
    if cursor is None:
        return 0, None
    try:
        index, inner = orjson.loads(base64.urlsafe_b64decode(str(cursor)))
        return int(index), inner
    except (ValueError, TypeError) as exc:
        raise RpcError(INVALID_PARAMS, "invalid cursor") from exc


async def _fan_out_list(
    ctx: RequestContext,
    params: JSONObject,
    *,
    capability: str,
    method: str,
    key: str,
    rename: Callable[[Upstream, JSONObject], JSONObject],
) -> JSONObject:
    """One page of a list merged over the upstreams that have ``capability``, in order."""
    pending = await pending_upstreams(ctx)
    upstreams = [u for u in ctx.catalog.with_capability(capability) if u.template_id not in pending]
    index, inner = _decode_cursor(params.get("cursor"))
    while index < len(upstreams):
        up = upstreams[index]
        call: JSONObject = upstream_params(ctx, {k: v for k, v in params.items() if k != "cursor"})
        if inner is not None:
            call["cursor"] = inner
        result = await forward(ctx, up, method, call)
        items = [rename(up, item) for item in result.get(key) or [] if isinstance(item, dict)]
        nxt = result.get("nextCursor")
        page: JSONObject = {key: items}
        if nxt:
            page["nextCursor"] = _encode_cursor(index, nxt)
        elif index + 1 < len(upstreams):
            page["nextCursor"] = _encode_cursor(index + 1, None)
        if items or "nextCursor" not in page:
            return page
        index, inner = index + 1, None
    return {key: []}


# --- methods --------------------------------------------------------------------------------


async def ping(ctx: RequestContext, params: JSONObject) -> JSONObject:
    return {}


async def tools_list(ctx: RequestContext, params: JSONObject) -> JSONObject:
    if ctx.catalog.compact:
        return {"tools": compact.TOOLS}
    tools = ctx.gateway.visible_tools(ctx.principal, ctx.catalog)
    pending = await pending_upstreams(ctx)
    if pending:
        # Until the caller connects an OAuth upstream, its tools are not theirs to see.
        routes = ctx.catalog.tools
        tools = [
            t
            for t in tools
            if (route := routes.get(str(t.get("name")))) is None
            or route.upstream is None
            or route.upstream.template_id not in pending
        ]
    return {"tools": tools}


async def tools_call(ctx: RequestContext, params: JSONObject) -> JSONObject:
    name = params.get("name")
    if not isinstance(name, str):
        raise RpcError(INVALID_PARAMS, "tools/call needs a tool name")
    note = ctx.note
    check_marks = True
    if ctx.catalog.compact:
        if name == compact.SEARCH:
            note.tool_name = name
            return compact.search(ctx.gateway.visible_tools(ctx.principal, ctx.catalog), params.get("arguments"))
        if name == compact.CALL:
            name, arguments = compact.unwrap_call(params.get("arguments"))
            params = {**params, "name": name, "arguments": arguments}
            check_marks = False  # the client addressed call_tool: marks of the inner tool cannot be expected
    note.tool_name = name
    route = ctx.catalog.tools.get(name)
    if route is None:
        held = ctx.catalog.quarantined.get(name)
        if held is not None and (ctx.principal.all_tools or held[0] in ctx.principal.grants):
            (note.tool_id, status), note.status = held, "denied"
            raise RpcError(INVALID_PARAMS, quarantine_message(name, status), {"tool": name, "status": status})
        raise RpcError(INVALID_PARAMS, f"Unknown tool: '{name}'", {"tool": name})
    note.tool_id = route.tool_id
    upstream = route.upstream
    forward_call: Forward | None = None
    if upstream is not None:
        call_params = params

        def forward_call() -> Awaitable[JSONObject]:
            # The checks run when the pipeline's execute stage calls this; the coroutine it
            # returns is the upstream call itself (no extra frame in the await chain).
            if check_marks and route.param_marks and ctx.era == "modern":
                problem = mismatch(route.param_marks, call_params.get("arguments"), ctx.headers)
                if problem is not None:
                    raise RpcError(HEADER_MISMATCH, problem)
            call = upstream_params(ctx, call_params)
            call["name"] = route.upstream_name
            return forward(ctx, upstream, "tools/call", call)

    try:
        # No audit sink: this request's one audit record is written by the endpoint, from the note.
        done = await call_tool(
            ctx.gateway.pipeline,
            channel="mcp",
            caller=ctx.principal,
            route=route,
            arguments=params.get("arguments", {}),
            audit=None,
            forward=forward_call,
        )
    except BaseException as exc:
        note.status = failure_status(exc)
        if isinstance(exc, Forbidden):
            raise RpcError(INVALID_PARAMS, f"Tool '{name}' is not allowed: {exc}", {"tool": name}) from None
        if isinstance(exc, RateLimited):
            data = {"tool": name, "retryAfter": max(1, math.ceil(exc.retry_after))}
            raise RpcError(RATE_LIMITED, str(exc), data) from None
        if route.local is not None and isinstance(exc, PatchbayError) and not isinstance(exc, StoreUnavailable):
            # A local tool's own failure (bad arguments, missing path, conflict) is a tool result the model can read.
            return {"content": [{"type": "text", "text": str(exc)}], "isError": True}
        raise  # an upstream's error; a backing service that failed (the endpoint answers 503)
    if not done.local:
        return done.value
    text = orjson.dumps(done.value).decode()
    return {"content": [{"type": "text", "text": text}], "structuredContent": done.value, "isError": False}


def quarantine_message(name: str, status: str = "quarantined") -> str:
    """Why a held-back tool cannot be called, and what an admin does about it."""
    if status == "rejected":
        return (
            f"Tool '{name}' is unavailable: its upstream changed the tool's definition and an admin "
            "rejected the change (patchbay tool approve would accept it)"
        )
    return (
        f"Tool '{name}' is quarantined: its upstream changed the tool's definition, which awaits an "
        "admin's review (patchbay tool review, then patchbay tool approve or reject)"
    )


def _rename_prompt(ctx: RequestContext) -> Callable[[Upstream, JSONObject], JSONObject]:
    def rename(up: Upstream, item: JSONObject) -> JSONObject:
        if ctx.catalog.plain_names or "name" not in item:
            return item
        return {**item, "name": ctx.catalog.expose(up, str(item["name"]))}

    return rename


def _own_resource(ctx: RequestContext) -> Callable[[Upstream, JSONObject], JSONObject]:
    def own(up: Upstream, item: JSONObject) -> JSONObject:
        uri = item.get("uri")
        if isinstance(uri, str):
            ctx.catalog.resource_owner.setdefault(uri, up)
        return item

    return own


async def prompts_list(ctx: RequestContext, params: JSONObject) -> JSONObject:
    return await _fan_out_list(
        ctx, params, capability="prompts", method="prompts/list", key="prompts", rename=_rename_prompt(ctx)
    )


async def prompts_get(ctx: RequestContext, params: JSONObject) -> JSONObject:
    name = params.get("name")
    owner = ctx.catalog.unexpose(name) if isinstance(name, str) else None
    if owner is None:
        raise RpcError(INVALID_PARAMS, f"Unknown prompt: '{name}'")
    up, upstream_name = owner
    call = upstream_params(ctx, params)
    call["name"] = upstream_name
    return await forward(ctx, up, "prompts/get", call)


async def resources_list(ctx: RequestContext, params: JSONObject) -> JSONObject:
    return await _fan_out_list(
        ctx,
        params,
        capability="resources",
        method="resources/list",
        key="resources",
        rename=_own_resource(ctx),
    )


async def resource_templates_list(ctx: RequestContext, params: JSONObject) -> JSONObject:
    return await _fan_out_list(
        ctx,
        params,
        capability="resources",
        method="resources/templates/list",
        key="resourceTemplates",
        rename=lambda _up, item: item,
    )


async def _by_resource(ctx: RequestContext, uri: str, method: str, params: JSONObject) -> JSONObject:
    """Send a URI-addressed request to the upstream that owns the URI (or the first that has it)."""
    owner = ctx.catalog.resource_owner.get(uri)
    candidates = [owner] if owner is not None else ctx.catalog.with_capability("resources")
    if not candidates:
        raise RpcError(RESOURCE_NOT_FOUND, f"Resource not found: {uri}", {"uri": uri})
    last: RpcError | None = None
    for up in candidates:
        try:
            result = await forward(ctx, up, method, upstream_params(ctx, params))
        except RpcError as exc:
            if exc.code not in (RESOURCE_NOT_FOUND, INVALID_PARAMS) or len(candidates) == 1:
                raise
            last = exc
            continue
        ctx.catalog.resource_owner.setdefault(uri, up)
        return result
    assert last is not None
    raise last


async def resources_read(ctx: RequestContext, params: JSONObject) -> JSONObject:
    uri = params.get("uri")
    if not isinstance(uri, str):
        raise RpcError(INVALID_PARAMS, "resources/read needs a uri")
    return await _by_resource(ctx, uri, "resources/read", params)


async def resources_subscribe(ctx: RequestContext, params: JSONObject) -> JSONObject:
    uri = params.get("uri")
    if not isinstance(uri, str) or ctx.session is None:
        raise RpcError(INVALID_PARAMS, "resources/subscribe needs a uri and a session")
    owner = ctx.catalog.resource_owner.get(uri)
    if owner is None:
        able = [u for u in ctx.catalog.with_capability("resources") if u.capabilities["resources"].get("subscribe")]
        if not able:
            raise RpcError(INVALID_PARAMS, f"no upstream can subscribe to {uri}")
        owner = able[0]
    if ctx.gateway.resources.needs_listen(owner.protocol_version):
        ctx.gateway.resources.watch(owner.resolve(ctx.principal, ctx.principal.user_id).spec, uri)
    else:
        await forward(ctx, owner, "resources/subscribe", upstream_params(ctx, params))
    if uri not in ctx.session.subscriptions:
        ctx.session = replace(ctx.session, subscriptions=[*ctx.session.subscriptions, uri])
        await ctx.gateway.sessions.save(ctx.session)
    return {}


async def resources_unsubscribe(ctx: RequestContext, params: JSONObject) -> JSONObject:
    """Stop relaying updates to this session; the pooled upstream subscription may serve others."""
    uri = params.get("uri")
    if not isinstance(uri, str) or ctx.session is None:
        raise RpcError(INVALID_PARAMS, "resources/unsubscribe needs a uri and a session")
    if uri in ctx.session.subscriptions:
        ctx.session = replace(ctx.session, subscriptions=[u for u in ctx.session.subscriptions if u != uri])
        await ctx.gateway.sessions.save(ctx.session)
    return {}


async def completion_complete(ctx: RequestContext, params: JSONObject) -> JSONObject:
    ref = params.get("ref")
    if not isinstance(ref, dict):
        raise RpcError(INVALID_PARAMS, "completion/complete needs a ref")
    if ref.get("type") == "ref/prompt":
        owner = ctx.catalog.unexpose(str(ref.get("name")))
        if owner is None:
            raise RpcError(INVALID_PARAMS, f"Unknown prompt: '{ref.get('name')}'")
        up, upstream_name = owner
        call = upstream_params(ctx, params)
        call["ref"] = {**ref, "name": upstream_name}
        return await forward(ctx, up, "completion/complete", call)
    if ref.get("type") == "ref/resource":
        return await _by_resource(ctx, str(ref.get("uri")), "completion/complete", params)
    raise RpcError(INVALID_PARAMS, f"unknown completion ref type {ref.get('type')!r}")


async def logging_set_level(ctx: RequestContext, params: JSONObject) -> JSONObject:
    level = params.get("level")
    if not isinstance(level, str):
        raise RpcError(INVALID_PARAMS, "logging/setLevel needs a level")
    if ctx.session is not None:
        ctx.session = replace(ctx.session, log_level=level)
        await ctx.gateway.sessions.save(ctx.session)
    upstreams = ctx.catalog.with_capability("logging")
    # Best effort: one upstream refusing a level must not fail the client's request.
    await asyncio.gather(
        *(forward(ctx, up, "logging/setLevel", {"level": level}) for up in upstreams), return_exceptions=True
    )
    return {}


async def server_discover(ctx: RequestContext, params: JSONObject) -> JSONObject:
    result: JSONObject = {
        "supportedVersions": list(MODERN_VERSIONS),
        "capabilities": ctx.catalog.capabilities,
        "cacheScope": "private",
        "ttlMs": 0,
        "_meta": {META_SERVER_INFO: SERVER_INFO},
    }
    if ctx.catalog.instructions:
        result["instructions"] = ctx.catalog.instructions
    return result


HANDLERS: dict[str, Handler] = {
    "ping": ping,
    "tools/list": tools_list,
    "tools/call": tools_call,
    "prompts/list": prompts_list,
    "prompts/get": prompts_get,
    "resources/list": resources_list,
    "resources/templates/list": resource_templates_list,
    "resources/read": resources_read,
    "resources/subscribe": resources_subscribe,
    "resources/unsubscribe": resources_unsubscribe,
    "completion/complete": completion_complete,
    "logging/setLevel": logging_set_level,
    "server/discover": server_discover,
}

# Methods that need a capability the server may not have.
REQUIRED_CAPABILITY: dict[str, str] = {
    "prompts/list": "prompts",
    "prompts/get": "prompts",
    "resources/list": "resources",
    "resources/templates/list": "resources",
    "resources/read": "resources",
    "resources/subscribe": "resources",
    "resources/unsubscribe": "resources",
    "completion/complete": "completions",
    "logging/setLevel": "logging",
}

# Removed from the 2026-07-28 wire: a modern client asking for them gets method-not-found.
LEGACY_ONLY = frozenset({"ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe"})

# Results a 2026-07-28 client may cache; they carry a cache scope and TTL.
CACHEABLE = frozenset({"tools/list", "prompts/list", "resources/list", "resources/templates/list", "resources/read"})
