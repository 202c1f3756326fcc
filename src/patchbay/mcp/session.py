"""Legacy (2025-11-25) sessions, kept in the shared store so any replica can continue them."""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import orjson

from patchbay.jsonrpc_types import JSONObject
from patchbay.state.base import SharedStore

_PREFIX = "session:"


@dataclass(slots=True, frozen=True)
class LegacySession:
    """A session as stored; frozen because ``SessionStore.load`` hands the same object to every
    request until the stored value changes (a change is ``dataclasses.replace`` and ``save``)."""

    id: str
    key_id: str
    server_id: str
    protocol_version: str
    client_capabilities: JSONObject = field(default_factory=dict)
    client_info: JSONObject = field(default_factory=dict)
    log_level: str | None = None
    initialized: bool = False
    subscriptions: list[str] = field(default_factory=list)


class _Parsed(NamedTuple):
    raw: bytes
    session: LegacySession


class SessionStore:
    """Sessions in the shared store; each use renews the TTL, at most once per ``renew_every`` per process.

    Renewing on every request cost a store round trip per call (and, in the in-process store,
    a heap entry per call kept until its deadline: millions per hour under load). A session
    therefore expires between ``ttl - renew_every`` and ``ttl`` after its last use.

    A session is parsed once per stored value: each load compares the stored bytes with the
    ones last parsed (another replica's change arrives as different bytes) and hands out the
    same frozen ``LegacySession`` while they are equal. Parsing cost every request ~1.5 µs.
    """

    def __init__(self, store: SharedStore, *, ttl: float) -> None:
        self._store = store
        self._ttl = ttl
        self._renew_every = min(ttl / 10, 60.0)
        self._renewed: dict[str, float] = {}
        self._parsed: dict[str, _Parsed] = {}

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
            self._renewed.pop(session_id, None)
            self._parsed.pop(session_id, None)
            return None
        now = time.monotonic()
        if now - self._renewed.get(session_id, -self._renew_every) >= self._renew_every:
            await self._store.expire(_PREFIX + session_id, self._ttl)
            self._note_renewal(session_id, now)
        parsed = self._parsed.get(session_id)
        if parsed is not None and parsed.raw == raw:
            return parsed.session
        session = LegacySession(**orjson.loads(raw))
        if len(self._parsed) >= 10_000:
            self._parsed.clear()  # parsing again is cheap; an unbounded cache is not
        self._parsed[session_id] = _Parsed(raw, session)
        return session

    def _note_renewal(self, session_id: str, now: float) -> None:
        renewed = self._renewed
        renewed[session_id] = now
        if len(renewed) > 10_000:
            for stale in [k for k, when in renewed.items() if now - when >= self._renew_every]:
                del renewed[stale]

    async def save(self, session: LegacySession) -> None:
        await self._store.set(_PREFIX + session.id, orjson.dumps(asdict(session)), ttl=self._ttl)
        self._note_renewal(session.id, time.monotonic())

    async def delete(self, session_id: str) -> None:
        self._renewed.pop(session_id, None)
        self._parsed.pop(session_id, None)
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
