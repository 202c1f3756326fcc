"""``/mcp`` and ``/mcp/k/{key}``: both MCP eras on one URL.

The request pipeline, in order:
  edge checks (Host/Origin, body size, JSON)  →  authenticate (API key → Principal)
  →  era (initialize / Mcp-Session-Id → 2025-11-25; ``_meta`` envelope → 2026-07-28)
  →  catalog of the key's server  →  handler (authorize per tool, route upstream)
  →  response (JSON, SSE, or input_required)  →  audit (queued, off the hot path).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Message, Receive, Scope, Send

from patchbay.audit import security
from patchbay.audit.context import current_request_id, new_request_id
from patchbay.audit.events import AuditEvent
from patchbay.audit.payloads import Captured, ResponseTap
from patchbay.auth.keys import looks_like_key, redact
from patchbay.auth.principal import Principal
from patchbay.errors import StoreUnavailable, Unauthenticated
from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.channel import Era, ResponseChannel
from patchbay.mcp.context import AuditNote, RequestContext
from patchbay.mcp.exchange import Outcome, continuation_owner, run_exchange, take_continuation
from patchbay.mcp.handlers import HANDLERS, LEGACY_ONLY, REQUIRED_CAPABILITY
from patchbay.mcp.protocol import (
    ERROR_HTTP_STATUS,
    HEADER_MISMATCH,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    LATEST_LEGACY,
    LEGACY_VERSIONS,
    META_CLIENT_CAPABILITIES,
    META_LOG_LEVEL,
    META_PROTOCOL_VERSION,
    METHOD_NOT_FOUND,
    MODERN_VERSIONS,
    NAME_PARAM,
    PARSE_ERROR,
    SERVER_INFO,
    UNSUPPORTED_PROTOCOL_VERSION,
    RpcError,
    error_message,
)
from patchbay.mcp.relay import RelayedRetry
from patchbay.mcp.resume import owns, parse_event_id, replay
from patchbay.mcp.session import LegacySession, reply_channel, session_channel
from patchbay.mcp.streams import serve_legacy_stream, serve_listen
from patchbay.runtime import Gateway
from patchbay.web.asgi import BodyTooLarge, duplicated, header_map, read_body, send_json
from patchbay.web.security import HostPolicy

logger = logging.getLogger(__name__)

_ROUTING_HEADERS = frozenset({b"mcp-protocol-version", b"mcp-method", b"mcp-name"})


def _www_authenticate(reason: str) -> list[tuple[bytes, bytes]]:
    value = f'Bearer realm="patchbay", error="invalid_token", error_description="{reason}"'
    return [(b"www-authenticate", value.encode())]


class HttpReject(Exception):
    """An answer decided before any handler runs."""

    def __init__(self, status: int, code: int, message: str, data: Any = None, request_id: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.data, self.request_id = (
            status,
            code,
            message,
            data,
            request_id,
        )


class McpEndpoint:
    """The raw-ASGI MCP endpoint; one instance serves every request of the process."""

    def __init__(self, gateway: Gateway) -> None:
        self.gw = gateway
        self.hosts = HostPolicy(gateway.settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracing = self.gw.tracing
        if tracing is not None:
            # The path can hold a key (/mcp/k/...): spans are named after the endpoint, never the path.
            with tracing.request_span(scope["method"], "/mcp", header_map(scope)):
                await self._call(scope, receive, send)
            return
        await self._call(scope, receive, send)

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = False

        async def tracked(message: Message) -> None:
            nonlocal began
            began = True
            await send(message)

        try:
            await self._handle(scope, receive, tracked)
        except (SQLAlchemyError, StoreUnavailable, OSError) as exc:
            # A backing service went away: say so, stay up; the next request tries again.
            logger.error("MCP request failed, a backing service is unavailable: %s", exc)
            if not began:
                what = "database" if isinstance(exc, SQLAlchemyError) else "shared store"
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
            await self._post(scope, receive, send, headers, principal, started)
        elif method == "GET":
            await self._get(scope, receive, send, headers, principal)
        elif method == "DELETE":
            await self._delete(send, headers, principal)
        else:
            await send_json(send, 405, error_message(None, INVALID_REQUEST, f"method {method} not allowed"))

    # --- POST ---------------------------------------------------------------------------------

    async def _post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        principal: Principal,
        t0: float,
    ) -> None:
        note = AuditNote()
        era: Era | None = None
        rpc_method: str | None = None
        outcome = Outcome(200, 0, None)
        bytes_in = 0
        body = b""
        tap: ResponseTap | None = None
        try:
            try:
                body = await read_body(receive, self.gw.settings.max_body_bytes)
            except BodyTooLarge:
                raise HttpReject(
                    413, INVALID_REQUEST, f"body larger than {self.gw.settings.max_body_bytes} bytes"
                ) from None
            bytes_in = len(body)
            try:
                message = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise HttpReject(400, PARSE_ERROR, "Parse error: body is not valid JSON") from None
            if isinstance(message, list):
                raise HttpReject(400, INVALID_REQUEST, "JSON-RPC batches are not supported")
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                raise HttpReject(400, INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
            rpc_method = message.get("method") if isinstance(message.get("method"), str) else None
            if rpc_method is None:
                await self._client_response(send, headers, principal, message)
                outcome = Outcome(202, 0, None)
                return
            if "id" not in message:
                outcome = Outcome(202, 0, None)
                await send({"type": "http.response.start", "status": 202, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            request_id = message["id"]
            if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
                raise HttpReject(400, INVALID_REQUEST, "Invalid Request: id must be a string or number")
            params = message.get("params", {})
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise HttpReject(400, INVALID_PARAMS, "params must be an object", request_id=request_id)
            if rpc_method == "initialize" and not _has_envelope(params):
                era = "legacy"
                outcome = await self._initialize(send, principal, request_id, params)
                return
            ctx, extra = await self._context(scope, headers, principal, rpc_method, request_id, params)
            era, note = ctx.era, ctx.note
            if ctx.catalog.capture_payloads:
                send = tap = ResponseTap(send, self.gw.settings.payload_max_bytes)
            outcome = await self._dispatch(ctx, rpc_method, params, send, receive, extra)
        except HttpReject as rej:
            note.status = "error"
            note.error_code = rej.code
            outcome = Outcome(rej.status, 0, rej.code)
            outcome.bytes_out = await send_json(
                send, rej.status, error_message(rej.request_id, rej.code, rej.message, rej.data)
            )
        finally:
            event = self._audit(principal, headers, rpc_method, era, note, outcome, bytes_in, t0)
            if self.gw.tracing is not None:
                self.gw.tracing.annotate_current(event)
            # The response is already sent; waiting here is the audit queue's backpressure.
            if tap is not None:
                await self.gw.payloads.submit(event, Captured.of(body, tap))
            elif not self.gw.audit.submit_nowait(event):
                await self.gw.audit.submit(event)

    async def _context(
        self,
        scope: Scope,
        headers: dict[str, str],
        principal: Principal,
        method: str,
        request_id: Any,
        params: JSONObject,
    ) -> tuple[RequestContext, list[tuple[bytes, bytes]]]:
        session_id = headers.get("mcp-session-id")
        session: LegacySession | None = None
        meta = params.get("_meta")
        if session_id is not None:
            session = await self.gw.sessions.load(session_id)
            if session is None or session.key_id != principal.key_id:
                raise HttpReject(
                    404, INVALID_REQUEST, "Session not found: send initialize again", request_id=request_id
                )
            version_header = headers.get("mcp-protocol-version")
            if version_header is not None and version_header not in LEGACY_VERSIONS:
                raise HttpReject(
                    400,
                    INVALID_REQUEST,
                    f"Unsupported MCP-Protocol-Version: {version_header}",
                    request_id=request_id,
                )
            era: Era = "legacy"
            version = session.protocol_version
            caps = session.client_capabilities
        elif _has_envelope(params) or method == "server/discover":
            era = "modern"
            version, caps = self._modern_envelope(scope, headers, method, request_id, params)
        else:
            raise HttpReject(
                400,
                INVALID_REQUEST,
                "Bad Request: no Mcp-Session-Id (send initialize first) and no 2026-07-28 _meta envelope",
                request_id=request_id,
            )
        catalog = await self.gw.catalogs.get(principal.server_id, principal.server_revision)
        progress = meta.get("progressToken") if isinstance(meta, dict) else None
        if era == "modern":
            requested = meta.get(META_LOG_LEVEL) if isinstance(meta, dict) else None
            log_level = requested if isinstance(requested, str) else None
        else:
            log_level = session.log_level if session is not None else None
        channel = ResponseChannel(
            era=era,
            store=self.gw.store,
            client_capabilities=caps if isinstance(caps, dict) else {},
            progress_token=progress,
            log_level=log_level,
        )
        ctx = RequestContext(
            gateway=self.gw,
            principal=principal,
            catalog=catalog,
            era=era,
            protocol_version=version,
            client_capabilities=caps if isinstance(caps, dict) else {},
            channel=channel,
            session=session,
            request_id=request_id,
            headers=headers,
        )
        extra = [(b"mcp-session-id", session.id.encode())] if session is not None else []
        return ctx, extra

    def _modern_envelope(
        self, scope: Scope, headers: dict[str, str], method: str, request_id: Any, params: JSONObject
    ) -> tuple[str, Any]:
        """The 2026-07-28 validation ladder: envelope, routing headers, then version."""
        meta = params.get("_meta")
        if not isinstance(meta, dict) or META_PROTOCOL_VERSION not in meta or META_CLIENT_CAPABILITIES not in meta:
            raise HttpReject(
                400,
                INVALID_PARAMS,
                f"params._meta must carry {META_PROTOCOL_VERSION!r} and {META_CLIENT_CAPABILITIES!r}",
                request_id=request_id,
            )
        version = meta[META_PROTOCOL_VERSION]
        dup = duplicated(scope, _ROUTING_HEADERS)
        if dup is not None:
            raise HttpReject(400, HEADER_MISMATCH, f"header {dup} was sent more than once", request_id=request_id)
        if _header(headers, "mcp-protocol-version") != version:
            raise HttpReject(
                400,
                HEADER_MISMATCH,
                "MCP-Protocol-Version header does not match the request's protocol version",
                request_id=request_id,
            )
        if _header(headers, "mcp-method") != method:
            raise HttpReject(
                400,
                HEADER_MISMATCH,
                "Mcp-Method header does not match the request's method",
                request_id=request_id,
            )
        name_key = NAME_PARAM.get(method)
        wanted = params.get(name_key) if name_key is not None else None
        if wanted is not None and _decode_header(_header(headers, "mcp-name")) != wanted:
            raise HttpReject(
                400,
                HEADER_MISMATCH,
                f"Mcp-Name header does not match the request's {name_key!r}",
                request_id=request_id,
            )
        if not isinstance(version, str):
            raise HttpReject(400, INVALID_PARAMS, "the protocol version must be a string", request_id=request_id)
        if version not in MODERN_VERSIONS:
            raise HttpReject(
                400,
                UNSUPPORTED_PROTOCOL_VERSION,
                "Unsupported protocol version",
                {"supported": list(MODERN_VERSIONS), "requested": version},
                request_id=request_id,
            )
        return version, meta[META_CLIENT_CAPABILITIES]

    async def _initialize(self, send: Send, principal: Principal, request_id: Any, params: JSONObject) -> Outcome:
        requested = params.get("protocolVersion")
        version = requested if requested in LEGACY_VERSIONS else LATEST_LEGACY
        caps = params.get("capabilities")
        info = params.get("clientInfo")
        catalog = await self.gw.catalogs.get(principal.server_id, principal.server_revision)
        session = await self.gw.sessions.create(
            key_id=principal.key_id,
            server_id=principal.server_id,
            protocol_version=str(version),
            capabilities=caps if isinstance(caps, dict) else {},
            info=info if isinstance(info, dict) else {},
        )
        result: JSONObject = {
            "protocolVersion": version,
            "capabilities": catalog.capabilities,
            "serverInfo": SERVER_INFO,
        }
        if catalog.instructions:
            result["instructions"] = catalog.instructions
        size = await send_json(
            send,
            200,
            {"jsonrpc": "2.0", "id": request_id, "result": result},
            [(b"mcp-session-id", session.id.encode())],
        )
        return Outcome(200, size, None)

    async def _dispatch(
        self,
        ctx: RequestContext,
        method: str,
        params: JSONObject,
        send: Send,
        receive: Receive,
        extra: list[tuple[bytes, bytes]],
    ) -> Outcome:
        if method == "subscriptions/listen" and ctx.era == "modern":
            return await serve_listen(ctx, params, send, receive)
        handler = HANDLERS.get(method) if ctx.era == "legacy" or method not in LEGACY_ONLY else None
        needed = REQUIRED_CAPABILITY.get(method)
        if handler is None or (needed is not None and needed not in ctx.catalog.capabilities):
            raise HttpReject(
                ERROR_HTTP_STATUS[METHOD_NOT_FOUND] if ctx.era == "modern" else 200,
                METHOD_NOT_FOUND,
                f"Method not found: {method}",
                request_id=ctx.request_id,
            )
        resume = None
        if ctx.era == "modern":
            owner = continuation_owner(params)
            if owner is not None and owner != self.gw.node_id:
                retry = RelayedRetry(method, params, ctx.request_id, ctx.principal.key_id)
                return await self.gw.relay.forward(owner, retry, send)
        try:
            if ctx.era == "modern":
                resume = take_continuation(
                    self.gw.continuations, params, key_id=ctx.principal.key_id, request_id=ctx.request_id
                )
        except RpcError as exc:
            raise HttpReject(400, exc.code, exc.message, request_id=ctx.request_id) from None
        return await run_exchange(
            ctx,
            method,
            handler,
            params,
            send,
            resume=resume,
            continuations=self.gw.continuations,
            extra_headers=extra,
        )

    async def _client_response(
        self, send: Send, headers: dict[str, str], principal: Principal, message: JSONObject
    ) -> None:
        """A legacy client answering a server→client request: hand it to whichever replica waits."""
        if "id" not in message or not ("result" in message or "error" in message):
            raise HttpReject(400, INVALID_REQUEST, "Invalid Request: a message needs a method, or an id and a result")
        session_id = headers.get("mcp-session-id")
        session = await self.gw.sessions.load(session_id) if session_id else None
        if session is None or session.key_id != principal.key_id:
            raise HttpReject(404, INVALID_REQUEST, "Session not found")
        await self.gw.store.publish(reply_channel(str(message["id"])), orjson.dumps(message))
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    # --- GET / DELETE -------------------------------------------------------------------------

    async def _get(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], principal: Principal
    ) -> None:
        session = await self._own_session(headers, principal)
        if session is None:
            await send_json(
                send,
                405 if "mcp-session-id" not in headers else 404,
                error_message(None, INVALID_REQUEST, "GET needs a valid Mcp-Session-Id"),
            )
            return
        if "text/event-stream" not in headers.get("accept", ""):
            await send_json(send, 406, error_message(None, INVALID_REQUEST, "Accept must include text/event-stream"))
            return
        last_event_id = headers.get("last-event-id")
        if last_event_id is not None:
            await self._resume(receive, send, session, principal, last_event_id)
            return
        await serve_legacy_stream(self.gw, session, principal, receive, send, session_channel(session.id))

    async def _resume(
        self, receive: Receive, send: Send, session: LegacySession, principal: Principal, last_event_id: str
    ) -> None:
        parsed = parse_event_id(last_event_id)
        if parsed is None or not await owns(self.gw.store, parsed[0], session.id):
            # Not one of this session's response streams (or it expired): a fresh stream loses nothing
            # the client can still get, so serve the session's standalone stream instead.
            await serve_legacy_stream(self.gw, session, principal, receive, send, session_channel(session.id))
            return
        await replay(self.gw.store, parsed[0], parsed[1], receive, send)

    async def _delete(self, send: Send, headers: dict[str, str], principal: Principal) -> None:
        session = await self._own_session(headers, principal)
        if session is None:
            await send_json(send, 404, error_message(None, INVALID_REQUEST, "Session not found"))
            return
        await self.gw.sessions.delete(session.id)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def _own_session(self, headers: dict[str, str], principal: Principal) -> LegacySession | None:
        session_id = headers.get("mcp-session-id")
        if not session_id:
            return None
        session = await self.gw.sessions.load(session_id)
        return session if session is not None and session.key_id == principal.key_id else None

    # --- audit --------------------------------------------------------------------------------

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

    @staticmethod
    def _audit(
        principal: Principal,
        headers: dict[str, str],
        method: str | None,
        era: Era | None,
        note: AuditNote,
        outcome: Outcome,
        bytes_in: int,
        t0: float,
    ) -> AuditEvent:
        return AuditEvent(
            org_id=principal.org_id,
            server_id=principal.server_id,
            api_key_id=principal.key_id,
            key_prefix=principal.key_prefix,
            user_id=principal.user_id,
            auth_method=principal.auth_method,
            channel="mcp",
            transport="streamable_http" if era != "modern" else "streamable_http_2026",
            method=method,
            tool_name=note.tool_name,
            tool_id=note.tool_id,
            http_status=outcome.http_status,
            error_code=outcome.error_code,
            status="error" if outcome.error_code is not None and note.status == "ok" else note.status,
            duration_ms=(time.perf_counter() - t0) * 1000.0,
            bytes_in=bytes_in,
            bytes_out=outcome.bytes_out,
            user_agent=headers.get("user-agent"),
            request_id=current_request_id(),
            credential=note.credential,
        )


def _has_envelope(params: JSONObject) -> bool:
    meta = params.get("_meta")
    return isinstance(meta, dict) and META_PROTOCOL_VERSION in meta


def _header(headers: dict[str, str], name: str) -> str | None:
    # Surrounding whitespace is not part of a field value (RFC 9110 §5.5); not every server strips it.
    value = headers.get(name)
    return value.strip() if value is not None else None


def _key_from(scope: Scope, headers: dict[str, str]) -> str | None:
    path_key = scope.get("path_params", {}).get("key")
    if path_key:
        return str(path_key)
    auth = headers.get("authorization")
    if auth is not None and auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key")


def _decode_header(value: str | None) -> str | None:
    """Mcp-Name values that are not plain ASCII arrive as ``=?base64?...?=``."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    import base64
    import binascii

    try:
        return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
