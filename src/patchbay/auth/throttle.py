"""Failed-login throttling in the shared store: a burst of wrong passwords locks the email out a while."""

from __future__ import annotations

import hashlib

from patchbay.errors import RateLimited
from patchbay.state.base import SharedStore

MAX_FAILURES = 10
WINDOW_SECONDS = 900.0


def _key(email: str) -> str:
    # Hashed: the store is no place for a list of who tried to log in.
    return "login-fail:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


class LoginThrottle:
    def __init__(self, store: SharedStore) -> None:
        self._store = store

    async def check(self, email: str) -> None:
        """RateLimited when the email has failed too often in the window."""
        raw = await self._store.get(_key(email))
        if raw is not None and int(raw) >= MAX_FAILURES:
            raise RateLimited(
                "too many failed logins for this email; try again in 15 minutes", retry_after=WINDOW_SECONDS
            )

    async def failed(self, email: str) -> None:
        """Count one failure (the window starts at the first)."""
        await self._store.incr(_key(email), ttl=WINDOW_SECONDS)

    async def succeeded(self, email: str) -> None:
        """Forget earlier failures."""
        await self._store.delete(_key(email))
