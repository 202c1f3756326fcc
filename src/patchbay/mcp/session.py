"""Legacy (2025-11-25) sessions, kept in the shared store so any replica can continue them."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field

import orjson

from patchbay.jsonrpc_types import JSONObject
from patchbay.state.base import SharedStore

_PREFIX = "session:"


@dataclass(slots=True)
class LegacySession:
    id: str
    key_id: str
    server_id: str
    protocol_version: str
    client_capabilities: JSONObject = field(default_factory=dict)
    client_info: JSONObject = field(default_factory=dict)
    log_level: str | None = None
    initialized: bool = False
    subscriptions: list[str] = field(default_factory=list)


class SessionStore:
    def __init__(self, store: SharedStore, *, ttl: float) -> None:
        self._store = store
        self._ttl = ttl

    async def create(
        self,
        *,
        key_id: str,
        server_id: str,
        protocol_version: str,
        capabilities: JSONObject,
        info: JSONObject,
    ) -> LegacySession:
        session = LegacySession(
            id=secrets.token_urlsafe(32),
            key_id=key_id,
            server_id=server_id,
            protocol_version=protocol_version,
            client_capabilities=capabilities,
            client_info=info,
        )
        await self.save(session)
        return session

    async def load(self, session_id: str) -> LegacySession | None:
        raw = await self._store.get(_PREFIX + session_id)
        if raw is None:
            return None
        await self._store.expire(_PREFIX + session_id, self._ttl)
        return LegacySession(**orjson.loads(raw))

    async def save(self, session: LegacySession) -> None:
        await self._store.set(_PREFIX + session.id, orjson.dumps(asdict(session)), ttl=self._ttl)

    async def delete(self, session_id: str) -> None:
        await self._store.delete(_PREFIX + session_id)


def session_channel(session_id: str) -> str:
    """Pub/sub channel of messages for a session's standalone GET stream."""
    return f"mcp:session:{session_id}"


def server_events_channel(server_id: str) -> str:
    """Pub/sub channel of events every client of a server may care about (resource updates, list changes)."""
    return f"mcp:server:{server_id}"


def reply_channel(request_id: str) -> str:
    """Pub/sub channel carrying a client's answer to a server→client request."""
    return f"mcp:reply:{request_id}"
