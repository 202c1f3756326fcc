"""``GET`` and ``DELETE`` on ``/mcp``: a 2025-11-25 session's standalone stream, its resumption, its end."""

from __future__ import annotations

from starlette.types import Receive, Send

from patchbay.auth.principal import Principal
from patchbay.mcp.protocol import INVALID_REQUEST, error_message
from patchbay.mcp.resume import owns, parse_event_id, replay
from patchbay.mcp.session import LegacySession, session_channel
from patchbay.mcp.streams import serve_legacy_stream
from patchbay.runtime import Gateway
from patchbay.web.asgi import send_json


async def get(gw: Gateway, receive: Receive, send: Send, headers: dict[str, str], principal: Principal) -> None:
    """Open the session's standalone stream, or resume a response stream from ``Last-Event-ID``."""
    session = await own_session(gw, headers, principal)
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
        await _resume(gw, receive, send, session, principal, last_event_id)
        return
    await serve_legacy_stream(gw, session, principal, receive, send, session_channel(session.id))


async def _resume(
    gw: Gateway, receive: Receive, send: Send, session: LegacySession, principal: Principal, last_event_id: str
) -> None:
    parsed = parse_event_id(last_event_id)
    if parsed is None or not await owns(gw.store, parsed[0], session.id):
        # Not one of this session's response streams (or it expired): a fresh stream loses nothing
        # the client can still get, so serve the session's standalone stream instead.
        await serve_legacy_stream(gw, session, principal, receive, send, session_channel(session.id))
        return
    await replay(gw.store, parsed[0], parsed[1], receive, send)


async def delete(gw: Gateway, send: Send, headers: dict[str, str], principal: Principal) -> None:
    """End the session."""
    session = await own_session(gw, headers, principal)
    if session is None:
        await send_json(send, 404, error_message(None, INVALID_REQUEST, "Session not found"))
        return
    await gw.sessions.delete(session.id)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def own_session(gw: Gateway, headers: dict[str, str], principal: Principal) -> LegacySession | None:
    """The request's session, when it exists and belongs to the calling key."""
    session_id = headers.get("mcp-session-id")
    if not session_id:
        return None
    session = await gw.sessions.load(session_id)
    return session if session is not None and session.key_id == principal.key_id else None
