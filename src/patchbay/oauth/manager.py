"""Access tokens for calls: cached, refreshed before expiry or after a 401, one refresh at a time.

One refresh per connection at a time: an in-process lock serialises this replica's
callers, and a lock key in the shared store serialises replicas. Whoever waited re-reads
the stored token before refreshing, so N concurrent calls cause exactly one refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit import security
from patchbay.errors import ConnectionRequired, UpstreamError
from patchbay.oauth import grants, tokens
from patchbay.oauth.owner import Owner
from patchbay.oauth.registration import credentials
from patchbay.oauth.tokens import Held
from patchbay.oauth.urls import connect_url
from patchbay.oauth.wire import OAuthError, client
from patchbay.settings import Settings
from patchbay.state.base import SharedStore
from patchbay.store.models import OAuthClient, Organization, ServerTemplate

logger = logging.getLogger(__name__)

# The provider refused the grant itself: only a new authorization helps.
_DEAD_GRANT = frozenset({"invalid_grant", "unauthorized_client", "invalid_client"})
_LOCK_TTL = 30.0
_LOCK_POLL = 0.02
_ABSENT_SECONDS = 2.0  # how long "not connected" is believed before the database is asked again


class TokenManager:
    """Hands out access tokens per owner; shared by every request of this process."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        store: SharedStore,
        secret: bytes,
        settings: Settings,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._store = store
        self._secret = secret
        self._settings = settings
        self._held: dict[str, Held] = {}
        self._absent: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def forget(self, owner: Owner) -> None:
        """Drop what this process remembers of ``owner`` (after connect, disconnect or a change)."""
        self._held.pop(owner.key, None)
        self._absent.pop(owner.key, None)

    async def connected(self, owner: Owner) -> bool:
        """Whether ``owner`` has a usable connection (cheap: answered from memory when it can)."""
        if owner.key in self._held:
            return not self._held[owner.key].dead
        if self._absent.get(owner.key, 0.0) > time.monotonic():
            return False
        held = await self._load(owner)
        return held is not None and not held.dead

    async def access_token(self, owner: Owner) -> str:
        """A current access token for ``owner``; ConnectionRequired when they must (re)connect."""
        held = self._held.get(owner.key)
        if held is None:
            held = await self._load(owner)
        if held is None or held.dead:
            raise await self._required(owner, dead=held is not None)
        if held.expiring():
            return await self.refresh(owner, stale=held.access_token)
        return held.access_token

    async def refresh(self, owner: Owner, *, stale: str) -> str:
        """Replace the access token ``stale`` (expiring, or refused by the upstream) and return the new one."""
        lock = self._locks.setdefault(owner.key, asyncio.Lock())
        async with lock:
            fresh = await self._fresh_other_than(owner, stale)
            if fresh is not None:
                return fresh
            async with self._replica_lock(owner):
                fresh = await self._fresh_other_than(owner, stale)
                if fresh is not None:
                    return fresh
                return await self._refresh_now(owner)

    async def _fresh_other_than(self, owner: Owner, stale: str) -> str | None:
        """A token someone else refreshed meanwhile (re-read from the database), if there is one."""
        held = await self._load(owner)
        if held is None or held.dead:
            raise await self._required(owner, dead=held is not None)
        # Refreshed by someone else since ``stale`` was handed out: use theirs, even if short-lived.
        if held.access_token != stale and not held.expired():
            return held.access_token
        return None

    @contextlib.asynccontextmanager
    async def _replica_lock(self, owner: Owner) -> AsyncIterator[None]:
        key = f"oauth:refresh-lock:{owner.key}"
        deadline = time.monotonic() + _LOCK_TTL
        while not await self._store.set_if_absent(key, b"1", ttl=_LOCK_TTL):
            if time.monotonic() > deadline:
                raise UpstreamError("another gateway replica has been refreshing this OAuth token for too long")
            await asyncio.sleep(_LOCK_POLL)
        try:
            yield
        finally:
            await self._store.delete(key)

    async def _refresh_now(self, owner: Owner) -> str:
        async with self._sessionmaker() as session:
            row = await tokens.find(session, owner)
            oauth_client = await session.scalar(select(OAuthClient).where(OAuthClient.template_id == owner.template_id))
            if row is None or oauth_client is None:
                raise await self._required(owner, dead=False)
            held = tokens.open_row(row, self._secret)
            if held.refresh_token is None:
                raise await self._required(
                    owner, dead=True, why="the access token expired and there is no refresh token"
                )
            try:
                async with client() as http:
                    granted = await grants.refresh(
                        http,
                        token_endpoint=oauth_client.token_endpoint,
                        creds=credentials(oauth_client, self._secret),
                        refresh_token=held.refresh_token,
                        resource=oauth_client.resource,
                        scopes=held.scopes,
                    )
            except OAuthError as exc:
                if exc.error not in _DEAD_GRANT:
                    raise
                await tokens.mark_dead(session, owner)
                security.record(session, _event(owner, "oauth.refresh_failed", status="error", detail=str(exc)[:200]))
                await session.commit()
                self._held.pop(owner.key, None)
                raise await self._required(owner, dead=True) from None
            saved = await tokens.save(session, owner=owner, client=oauth_client, tokens=granted, secret=self._secret)
            await session.commit()
            fresh = tokens.open_row(saved, self._secret)
        self._held[owner.key] = fresh
        logger.info("refreshed the OAuth token of upstream %s for %s", owner.template_id, owner.user_id or "org")
        return fresh.access_token

    async def _load(self, owner: Owner) -> Held | None:
        async with self._sessionmaker() as session:
            held = await tokens.load(session, owner, secret=self._secret)
        if held is None:
            self._held.pop(owner.key, None)
            self._absent[owner.key] = time.monotonic() + _ABSENT_SECONDS
        else:
            self._held[owner.key] = held
            self._absent.pop(owner.key, None)
        return held

    async def _required(self, owner: Owner, *, dead: bool, why: str | None = None) -> ConnectionRequired:
        """The error that tells the user to (re)connect, with the link that starts it."""
        async with self._sessionmaker() as session:
            org = await session.get(Organization, owner.org_id)
            template = await session.get(ServerTemplate, owner.template_id)
        upstream = template.slug if template is not None else owner.template_id
        link = connect_url(
            self._settings, org_slug=org.slug if org is not None else owner.org_id, upstream_slug=upstream
        )
        if dead:
            reason = why or "the provider no longer accepts the stored authorization"
            message = f"Your connection to upstream '{upstream}' has expired ({reason}): reconnect at {link}"
        else:
            message = f"Upstream '{upstream}' needs you to connect your account first: connect at {link}"
        return ConnectionRequired(message, connect_url=link)


def _event(
    owner: Owner, name: security.SecurityEventName, *, status: str = "ok", detail: str | None = None
) -> security.AuditEvent:
    return security.security_event(
        event=name, channel="mcp", status=status, org_id=owner.org_id, user_id=owner.user_id, detail=detail
    )
