"""Tool access keys: a ``tk_`` key to one tool, with scopes execute / read / admin.

As with API keys, the secret exists only while ``create_tool_key`` returns it; the
database keeps its prefix and a keyed hash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.auth.keys import TOOL_KEY_PREFIX, generate_key, looks_like_key, redact
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.local_tools import check_rate_limit
from patchbay.store.changes import announce_change
from patchbay.store.models import Tool, ToolAccessKey, utcnow

SCOPES: Final = ("execute", "read", "admin")
_PREFIX_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ToolKeySummary:
    """A tool key as lists show it: never any secret material."""

    id: str
    prefix: str
    name: str
    tool: str
    scopes: tuple[str, ...]
    state: str  # active / expired / revoked
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def tool_key_state(key: ToolAccessKey, *, now: datetime | None = None) -> str:
    """Whether a tool key works now, and if not, why."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and _aware(key.expires_at) <= (now or utcnow()):
        return "expired"
    return "active"


def check_scopes(scopes: Sequence[str]) -> list[str]:
    """Known scopes, deduplicated in a stable order; ``execute`` when none are given."""
    wanted = [s.strip().lower() for s in scopes] or ["execute"]
    for scope in wanted:
        if scope not in SCOPES:
            raise InvalidInput(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    return [s for s in SCOPES if s in wanted]


async def create_tool_key(
    session: AsyncSession,
    *,
    org_id: str,
    tool: Tool,
    name: str,
    scopes: Sequence[str],
    expires_in: timedelta | None,
    rate_limit: int | None,
    secret: bytes,
) -> tuple[ToolAccessKey, str]:
    """A new key to ``tool`` and its secret, which is not stored and cannot be shown again."""
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("a key must expire in the future")
    check_rate_limit(rate_limit)
    chosen = check_scopes(scopes)
    new_key = generate_key(secret, kind=TOOL_KEY_PREFIX)
    for _ in range(_PREFIX_ATTEMPTS):
        if await session.scalar(select(ToolAccessKey.id).where(ToolAccessKey.prefix == new_key.prefix)) is None:
            break
        new_key = generate_key(secret, kind=TOOL_KEY_PREFIX)
    else:  # pragma: no cover - 54 bits of prefix
        raise Conflict("could not find a free key prefix; try again")
    key = ToolAccessKey(
        tool_id=tool.id,
        org_id=org_id,
        name=name.strip(),
        prefix=new_key.prefix,
        secret_hash=new_key.secret_hash,
        scopes=chosen,
        expires_at=utcnow() + expires_in if expires_in is not None else None,
        rate_limit=rate_limit,
    )
    session.add(key)
    await session.flush()
    return key, new_key.secret


async def list_tool_keys(session: AsyncSession, *, org_id: str, tool: Tool | None = None) -> list[ToolKeySummary]:
    """The org's tool keys (or one tool's), newest first."""
    query = (
        select(ToolAccessKey, Tool.name)
        .join(Tool, Tool.id == ToolAccessKey.tool_id)
        .where(ToolAccessKey.org_id == org_id)
        .order_by(ToolAccessKey.created_at.desc(), ToolAccessKey.id.desc())
    )
    if tool is not None:
        query = query.where(ToolAccessKey.tool_id == tool.id)
    now = utcnow()
    return [summary_of(key, tool=tool_name, now=now) for key, tool_name in (await session.execute(query)).all()]


def summary_of(key: ToolAccessKey, *, tool: str, now: datetime | None = None) -> ToolKeySummary:
    """A tool key's metadata (the name of its tool given), never its secret."""
    return ToolKeySummary(
        id=key.id,
        prefix=key.prefix,
        name=key.name,
        tool=tool,
        scopes=tuple(key.scopes),
        state=tool_key_state(key, now=now),
        created_at=key.created_at,
        expires_at=key.expires_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


async def revoke_tool_key(session: AsyncSession, *, org_id: str, prefix: str) -> ToolAccessKey:
    """Revoke a tool key; gateways that cache keys hear of it before the transaction ends."""
    value = prefix.strip()
    wanted = redact(value).removesuffix("…") if looks_like_key(value, kind=TOOL_KEY_PREFIX) else value
    key = await session.scalar(
        select(ToolAccessKey).where(ToolAccessKey.prefix == wanted, ToolAccessKey.org_id == org_id)
    )
    if key is None:
        raise NotFound(f"no tool key with prefix {wanted!r}")
    if key.revoked_at is not None:
        raise Conflict(f"tool key {key.prefix} is already revoked")
    key.revoked_at = utcnow()
    await session.flush()
    await announce_change(session)
    return key
