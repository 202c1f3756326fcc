"""Tool access key → the caller it authenticates (one tool, some scopes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.auth.keys import TOOL_KEY_PREFIX, hash_key, looks_like_key
from patchbay.errors import Unauthenticated
from patchbay.store.models import ToolAccessKey

LAST_USED_GRAIN = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class ToolKeyGrant:
    """An authenticated tool key: the one tool it opens and what it may do with it."""

    key_id: str
    prefix: str
    org_id: str
    tool_id: str
    scopes: frozenset[str]
    rate_limit: int | None


async def verify_tool_key(session: AsyncSession, *, raw_key: str, secret: bytes) -> ToolKeyGrant:
    """The grant of ``raw_key`` (its last use is stamped); Unauthenticated says why not."""
    if not looks_like_key(raw_key, kind=TOOL_KEY_PREFIX):
        raise Unauthenticated("malformed tool key")
    key = await session.scalar(select(ToolAccessKey).where(ToolAccessKey.secret_hash == hash_key(raw_key, secret)))
    if key is None:
        raise Unauthenticated("unknown tool key")
    if key.revoked_at is not None:
        raise Unauthenticated(f"tool key {key.prefix} was revoked")
    now = datetime.now(UTC)
    expires = key.expires_at
    if expires is not None:
        expires = expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)
        if expires <= now:
            raise Unauthenticated(f"tool key {key.prefix} expired at {expires.isoformat()}")
    last = key.last_used_at
    if last is None or (last if last.tzinfo is not None else last.replace(tzinfo=UTC)) < now - LAST_USED_GRAIN:
        # A write per call would serialise every call of a key on its row; a minute is precise enough.
        await session.execute(update(ToolAccessKey).where(ToolAccessKey.id == key.id).values(last_used_at=now))
    return ToolKeyGrant(
        key_id=key.id,
        prefix=key.prefix,
        org_id=key.org_id,
        tool_id=key.tool_id,
        scopes=frozenset(key.scopes),
        rate_limit=key.rate_limit,
    )
