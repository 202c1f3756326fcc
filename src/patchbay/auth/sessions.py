"""Browser login sessions, kept in the shared store so that any replica serves any user.

The cookie holds a random session id; the store holds it only as a SHA-256 digest, so
a dump of Redis yields no usable cookie. Each session carries its own CSRF token and
the user's session epoch: a password change bumps the epoch and ends every session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson

from patchbay.state.base import SharedStore

SESSION_COOKIE = "patchbay_session"
CSRF_COOKIE = "patchbay_csrf"
CSRF_HEADER = "x-csrf-token"
DEFAULT_TTL = 12 * 3600.0


@dataclass(frozen=True, slots=True)
class LoginSession:
    """One signed-in browser: who, the CSRF token it must echo, the epoch it started in."""

    session_id: str
    user_id: str
    csrf_token: str
    epoch: int

    def csrf_matches(self, presented: str | None) -> bool:
        """Constant-time comparison of a presented CSRF token with this session's."""
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf_token.encode())


def _key(session_id: str) -> str:
    return "login:" + hashlib.sha256(session_id.encode()).hexdigest()


class LoginSessions:
    """Create, look up (renewing the idle timeout) and end login sessions."""

    def __init__(self, store: SharedStore, *, ttl: float = DEFAULT_TTL) -> None:
        self._store = store
        self.ttl = ttl

    async def create(self, *, user_id: str, epoch: int) -> LoginSession:
        """A new session for ``user_id``; the id is returned once, for the cookie."""
        session = LoginSession(
            session_id=secrets.token_urlsafe(32), user_id=user_id, csrf_token=secrets.token_urlsafe(32), epoch=epoch
        )
        record = {"user_id": user_id, "csrf": session.csrf_token, "epoch": epoch}
        await self._store.set(_key(session.session_id), orjson.dumps(record), ttl=self.ttl)
        return session

    async def get(self, session_id: str) -> LoginSession | None:
        """The live session behind a cookie value, or None; a hit renews its idle timeout."""
        if not session_id or len(session_id) > 128:
            return None
        key = _key(session_id)
        raw = await self._store.get(key)
        if raw is None:
            return None
        record = orjson.loads(raw)
        await self._store.expire(key, self.ttl)
        return LoginSession(
            session_id=session_id, user_id=record["user_id"], csrf_token=record["csrf"], epoch=int(record["epoch"])
        )

    async def end(self, session_id: str) -> None:
        """Forget a session (logout)."""
        await self._store.delete(_key(session_id))
