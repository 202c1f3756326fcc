"""API key → Principal.

A miss is one indexed query (key hash joined to its server's revision). Hits come
from a per-process cache that is dropped whenever the change watcher reports that
another connection changed the database, so a revocation made by any process (the
CLI included) takes effect on the next request; expiry is checked on every hit.
``last_used_at`` is written in batches off the request path.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.auth.keys import hash_key, looks_like_key
from patchbay.auth.principal import Principal, ToolGrant
from patchbay.errors import Unauthenticated
from patchbay.policy.credentials import CredentialChoice, choice_of
from patchbay.store.changes import ChangeWatcher
from patchbay.store.models import ApiKey, ApiKeyCredential, ApiKeyToolPermission, Server, SharedCredential

logger = logging.getLogger(__name__)

_CACHE_SIZE = 50_000
# Raw keys that resolved lately, with their digests (decision 0020): a client sends the same key
# on every request, and its HMAC was ~2 % of a proxied call. Only keys that resolved are kept,
# only the most recent few, and none past a change to keys or servers.
_RECENT_KEYS = 256

_KEY_QUERY = (
    select(
        ApiKey.id,
        ApiKey.prefix,
        ApiKey.revision,
        ApiKey.org_id,
        ApiKey.server_id,
        ApiKey.user_id,
        ApiKey.all_tools,
        ApiKey.expires_at,
        ApiKey.revoked_at,
        Server.revision,
        Server.status,
        ApiKey.rate_limit,
        ApiKey.shared,
    )
    .join(Server, Server.id == ApiKey.server_id)
    .where(ApiKey.secret_hash == bindparam("h"))
)


class KeyResolver:
    """Resolves raw API keys; one per process."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], secret: bytes, watcher: ChangeWatcher) -> None:
        self._sessionmaker = sessionmaker
        self._secret = secret
        self._watcher = watcher
        self._generation: int | None = None
        self._cache: dict[str, tuple[Principal, datetime | None]] = {}
        self._grants: dict[tuple[str, int], dict[str, ToolGrant]] = {}
        self._credentials: dict[tuple[str, int], dict[str, CredentialChoice]] = {}
        self._used: dict[str, datetime] = {}
        self._recent: dict[str, str] = {}  # raw key -> digest, for keys that resolved
        self.hits = 0  # for /metrics
        self.misses = 0

    async def resolve(self, raw_key: str) -> Principal:
        """The principal of ``raw_key``; raises Unauthenticated with the reason otherwise."""
        digest = self._recent.get(raw_key)
        known = digest is not None
        if digest is None:
            if not looks_like_key(raw_key):
                raise Unauthenticated("malformed API key")
            digest = hash_key(raw_key, self._secret)
        generation = await self._watcher.confirmed_generation()
        if generation != self._generation:
            self._cache.clear()
            self._recent.clear()
            self._generation = generation
        hit = self._cache.get(digest)
        now = datetime.now(UTC)
        if hit is not None:
            self.hits += 1
            principal, expires = hit
            if expires is not None and expires <= now:
                self._recent.pop(raw_key, None)  # a refused key is not kept, even one that resolved before
                raise Unauthenticated(f"API key {principal.key_prefix} expired at {expires.isoformat()}")
            if not known:
                self._remember(raw_key, digest)
            self._used[principal.key_id] = now
            return principal
        self.misses += 1
        principal, expires = await self._lookup(digest, now)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        # A change that landed while we read may not be in what we read: use it, but do not keep it.
        if self._watcher.generation() == generation:
            self._cache[digest] = (principal, expires)
            self._remember(raw_key, digest)
        self._used[principal.key_id] = now
        return principal

    def _remember(self, raw_key: str, digest: str) -> None:
        if len(self._recent) >= _RECENT_KEYS:
            self._recent.clear()
        self._recent[raw_key] = digest

    async def _lookup(self, digest: str, now: datetime) -> tuple[Principal, datetime | None]:
        async with self._sessionmaker() as session:
            row = (await session.execute(_KEY_QUERY, {"h": digest})).first()
            if row is None:
                raise Unauthenticated("unknown API key")
            (
                key_id,
                prefix,
                key_rev,
                org_id,
                server_id,
                user_id,
                all_tools,
                expires,
                revoked,
                srv_rev,
                _,
                limit,
                shared,
            ) = row
            if revoked is not None:
                raise Unauthenticated(f"API key {prefix} was revoked")
            expires = _aware(expires) if expires is not None else None
            if expires is not None and expires <= now:
                raise Unauthenticated(f"API key {prefix} expired at {expires.isoformat()}")
            grants: dict[str, ToolGrant] = {}
            if not all_tools:
                cached = self._grants.get((key_id, key_rev))
                if cached is None:
                    cached = await self._load_grants(session, key_id)
                    self._grants[(key_id, key_rev)] = cached
                grants = cached
            # Bindings change only with the key's revision, like its grants.
            choices = self._credentials.get((key_id, key_rev))
            if choices is None:
                choices = await self._load_credentials(session, key_id)
                if len(self._credentials) >= _CACHE_SIZE:
                    self._credentials.clear()
                self._credentials[(key_id, key_rev)] = choices
        principal = Principal(
            key_id=key_id,
            key_prefix=prefix,
            key_revision=key_rev,
            org_id=org_id,
            server_id=server_id,
            server_revision=srv_rev,
            user_id=user_id,
            all_tools=all_tools,
            grants=grants,
            rate_limit=limit,
            shared=bool(shared),
            credentials=choices,
        )
        return principal, expires

    async def _load_credentials(self, session: AsyncSession, key_id: str) -> dict[str, CredentialChoice]:
        rows = await session.execute(
            select(ApiKeyCredential.template_id, ApiKeyCredential.source, SharedCredential.name)
            .outerjoin(SharedCredential, SharedCredential.id == ApiKeyCredential.shared_credential_id)
            .where(ApiKeyCredential.api_key_id == key_id)
        )
        return {template_id: choice_of(source, name) for template_id, source, name in rows}

    async def _load_grants(self, session: AsyncSession, key_id: str) -> dict[str, ToolGrant]:
        rows = await session.execute(
            select(ApiKeyToolPermission.tool_id, ApiKeyToolPermission.can_read, ApiKeyToolPermission.can_write).where(
                ApiKeyToolPermission.api_key_id == key_id
            )
        )
        return {tool_id: ToolGrant(can_read=r, can_write=w) for tool_id, r, w in rows}

    async def flush_last_used(self) -> None:
        """Write the batched ``last_used_at`` stamps (called periodically and at shutdown)."""
        if not self._used:
            return
        used, self._used = self._used, {}
        async with self._sessionmaker() as session:
            for key_id, when in used.items():
                await session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))
            await session.commit()


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
