"""``/mcp`` and ``/mcp/k/{key}``: both MCP eras on one URL.

The request pipeline, in order:
  edge checks (Host/Origin, body size, JSON)  →  authenticate (API key → Principal)
  →  era (initialize / Mcp-Session-Id → 2025-11-25; ``_meta`` envelope → 2026-07-28)
  →  catalog of the key's server  →  handler (authorize per tool, route upstream)
  →  response (JSON, SSE, or input_required)  →  audit (queued, off the hot path).

This module runs the steps every method shares (Host/Origin, the key) and hands the request
to its method: ``mcp_post`` (one JSON-RPC message: parse, era, context, dispatch, audit),
``mcp_sessions`` (GET: a legacy session's stream or its resumption; DELETE: its end).
"""

from __future__ import annotations

import contextlib
import logging
import time

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Receive, Scope, Send

from patchbay.audit import security
from patchbay.audit.context import new_request_id
from patchbay.auth.keys import looks_like_key, redact
from patchbay.errors import StoreUnavailable, Unauthenticated
from patchbay.mcp.protocol import INTERNAL_ERROR, INVALID_REQUEST, error_message
from patchbay.runtime import Gateway
from patchbay.web import mcp_post, mcp_sessions
from patchbay.web.asgi import header_map, send_json
from patchbay.web.security import HostPolicy

logger = logging.getLogger(__name__)


def _www_authenticate(reason: str) -> list[tuple[bytes, bytes]]:
    value = f'Bearer realm="patchbay", error="invalid_token", error_description="{reason}"'
    return [(b"www-authenticate", value.encode())]


class McpEndpoint:
    """The raw-ASGI MCP endpoint; one instance serves every request of the process."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.hosts = HostPolicy(gateway.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            tracing = self.gw.tracing
            if tracing is None:
                await self._handle(scope, receive, send)
            else:
                # The path can hold a key (/mcp/k/...): spans are named after the endpoint, never the path.
                with tracing.request_span(scope["method"], "/mcp", header_map(scope)):
                    await self._handle(scope, receive, send)
        except (SQLAlchemyError, StoreUnavailable, OSError) as exc:
            # A backing service went away: say so, stay up; the next request tries again.
            logger.error("MCP request failed, a backing service is unavailable: %s", exc)
            what = "database" if isinstance(exc, SQLAlchemyError) else "shared store"
            # A response already under way cannot be replaced: the server refuses a second start.
            with contextlib.suppress(RuntimeError):
                await send_json(
                    send, 503, error_message(None, INTERNAL_ERROR, f"the gateway's {what} is unavailable; retry later")
                )

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_map(scope)
        new_request_id(headers.get("x-request-id"))
        reason = self.hosts.check(headers.get("host"), headers.get("origin"))
        if reason is not None:
            await send_json(send, 403, error_message(None, INVALID_REQUEST, reason))
            return
        raw_key = _key_from(scope, headers)
        if raw_key is None:
            await self._auth_failed(headers, None)
            await send_json(
                send,
                401,
                error_message(None, INVALID_REQUEST, "missing API key: send Authorization: Bearer <key>"),
                _www_authenticate("missing API key"),
            )
            return
        try:
            principal = await self.gw.resolver.resolve(raw_key)
        except Unauthenticated as exc:
            await self._auth_failed(headers, raw_key)
            await send_json(send, 401, error_message(None, INVALID_REQUEST, str(exc)), _www_authenticate(str(exc)))
            return
        method = scope["method"]
        if method == "POST":
            await mcp_post.post(self.gw, scope, receive, send, headers, principal, started)
        elif method == "GET":
            await mcp_sessions.get(self.gw, receive, send, headers, principal)
        elif method == "DELETE":
            await mcp_sessions.delete(self.gw, send, headers, principal)
        else:
            await send_json(send, 405, error_message(None, INVALID_REQUEST, f"method {method} not allowed"))

    async def _auth_failed(self, headers: dict[str, str], raw_key: str | None) -> None:
        # Only the visible prefix of a presented key is kept: enough to spot a leaked or guessed one.
        prefix = redact(raw_key).removesuffix("…") if raw_key is not None and looks_like_key(raw_key) else None
        event = security.security_event(
            event="auth.failed",
            channel="mcp",
            status="denied",
            key_prefix=prefix,
            auth_method="api_key",
            http_status=401,
            user_agent=headers.get("user-agent"),
            transport="streamable_http",
        )
        if self.gw.tracing is not None:
            self.gw.tracing.annotate_current(event)
        await security.submit(self.gw.audit, event)


def _key_from(scope: Scope, headers: dict[str, str]) -> str | None:
    path_key = scope.get("path_params", {}).get("key")
    if path_key:
        return str(path_key)
    auth = headers.get("authorization")
    if auth is not None and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key")
