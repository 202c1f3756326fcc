"""API keys: one server, one owner, optionally a per-tool allow-list.

The secret exists in memory only while ``create_key`` returns it; the database
keeps its prefix (to find and show the key) and an HMAC of it (to check it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from patchbay.audit import security
from patchbay.auth.keys import generate_key, looks_like_key, redact
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.credentials import bind_credentials, check_bindings, key_credentials
from patchbay.services.orgs import is_member
from patchbay.services.revisions import bump_key
from patchbay.services.tools import ToolRow, server_tools
from patchbay.store.models import ApiKey, ApiKeyToolPermission, Server, User, utcnow

Access = Literal["r", "rw"]
KeyState = Literal["active", "expired", "revoked"]
MAX_KEY_NAME = 200
_PREFIX_ATTEMPTS = 5


@dataclass(frozen=True)
class KeySummary:
    """A key as lists show it; ``tools`` maps allowed exposed names to "r"/"rw" (None: every tool)."""

    key: ApiKey
    server: str
    user: str
    state: KeyState
    tools: dict[str, Access] | None
    # Upstream slug -> "own" / "org" / "shared:NAME", for upstreams the key chose explicitly.
    credentials: dict[str, str] = field(default_factory=dict)


class _Expiring(Protocol):
    @property
    def revoked_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


def key_state(key: _Expiring, *, now: datetime | None = None) -> KeyState:
    """Whether a key works now, and if not, why."""
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and _aware(key.expires_at) <= (now or utcnow()):
        return "expired"
    return "active"


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


async def create_key(
    session: AsyncSession,
    *,
    server: Server,
    user: User,
    name: str,
    allow: Sequence[tuple[str, str]] | None,
    expires_in: timedelta | None,
    secret: bytes,
    channel: security.Channel = "cli",
    rate_limit: int | None = None,
    credentials: Sequence[tuple[str, str]] = (),
    shared: bool = False,
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is not stored and cannot be shown again.

    ``credentials`` are (upstream, ``own``/``org``/``shared:NAME``) choices; a ``shared`` key is not
    personal and calls with shared credentials only (the caller checks who may create one).
    """
    clean_name = name.strip()
    if len(clean_name) > MAX_KEY_NAME:
        raise InvalidInput(f"key name is longer than {MAX_KEY_NAME} characters")
    if not user.is_active:
        raise InvalidInput(f"user {user.email} is deactivated")
    if not await is_member(session, org_id=server.org_id, user_id=user.id):
        raise InvalidInput(f"user {user.email} is not a member of the organization of server {server.slug!r}")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("a key must expire in the future")
    if rate_limit is not None and rate_limit < 1:
        raise InvalidInput("a rate limit is a positive number of calls per minute")
    grants = await _grants(session, server=server, allow=allow) if allow is not None else None
    bindings = await check_bindings(session, server=server, entries=credentials, shared_key=shared)
    new_key = generate_key(secret)
    for _ in range(_PREFIX_ATTEMPTS):
        if await session.scalar(select(ApiKey.id).where(ApiKey.prefix == new_key.prefix)) is None:
            break
        new_key = generate_key(secret)
    else:  # pragma: no cover - 54 bits of prefix
        raise Conflict("could not find a free key prefix; try again")
    key = ApiKey(
        org_id=server.org_id,
        server_id=server.id,
        user_id=user.id,
        name=clean_name,
        prefix=new_key.prefix,
        secret_hash=new_key.secret_hash,
        scopes=[],
        all_tools=grants is None,
        expires_at=utcnow() + expires_in if expires_in is not None else None,
        rate_limit=rate_limit,
        shared=shared,
    )
    session.add(key)
    await session.flush()
    await bind_credentials(session, key=key, bindings=bindings)
    for row, access in (grants or {}).values():
        session.add(
            ApiKeyToolPermission(api_key_id=key.id, tool_id=row.tool_id, can_read=True, can_write=access == "rw")
        )
    security.record(session, _key_event("key.created", key, channel))
    await session.flush()
    return key, new_key.secret


def _key_event(
    name: security.SecurityEventName, key: ApiKey, channel: security.Channel, *, detail: str | None = None
) -> security.AuditEvent:
    return security.security_event(
        detail=detail[:200] if detail else None,
        event=name,
        channel=channel,
        org_id=key.org_id,
        server_id=key.server_id,
        api_key_id=key.id,
        key_prefix=key.prefix,
        user_id=key.user_id,
    )


async def _grants(
    session: AsyncSession, *, server: Server, allow: Sequence[tuple[str, str]]
) -> dict[str, tuple[ToolRow, Access]]:
    rows = {row.name: row for row in await server_tools(session, server=server)}
    grants: dict[str, tuple[ToolRow, Access]] = {}
    for tool_name, access in allow:
        row = rows.get(tool_name)
        if row is None:
            raise InvalidInput(f"server {server.slug!r} has no tool named {tool_name!r}")
        if access not in ("r", "rw"):
            raise InvalidInput(f"access for tool {tool_name} must be r or rw, not {access!r}")
        if access == "r" and not row.read_only:
            raise InvalidInput(f"tool {tool_name} is not read-only; use {tool_name}:rw")
        if tool_name in grants:
            raise InvalidInput(f"tool {tool_name} is listed twice")
        grants[tool_name] = (row, "r" if access == "r" else "rw")
    return grants


async def list_keys(
    session: AsyncSession, *, org_id: str, server: Server | None = None, user_id: str | None = None
) -> list[KeySummary]:
    """The org's keys (or one server's, or one owner's), newest first; never any secret material."""
    query = (
        select(ApiKey, Server, User)
        .join(Server, ApiKey.server_id == Server.id)
        .join(User, ApiKey.user_id == User.id)
        .where(ApiKey.org_id == org_id)
        .options(selectinload(ApiKey.permissions))
        .order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
    )
    if server is not None:
        query = query.where(ApiKey.server_id == server.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    names_by_server: dict[str, dict[str, str]] = {}
    now = utcnow()
    out: list[KeySummary] = []
    found = (await session.execute(query)).all()
    chosen = await key_credentials(session, key_ids=[key.id for key, _, _ in found])
    for key, key_server, user in found:
        tools: dict[str, Access] | None = None
        if not key.all_tools:
            if key_server.id not in names_by_server:
                rows = await server_tools(session, server=key_server)
                names_by_server[key_server.id] = {row.tool_id: row.name for row in rows}
            names = names_by_server[key_server.id]
            tools = {names.get(p.tool_id, p.tool_id): "rw" if p.can_write else "r" for p in key.permissions}
        out.append(
            KeySummary(
                key=key,
                server=key_server.slug,
                user=user.email,
                state=key_state(key, now=now),
                tools=tools,
                credentials=chosen.get(key.id, {}),
            )
        )
    return out


def normalise_prefix(value: str) -> str:
    """A key prefix from a prefix or, if someone pastes it, a whole key."""
    value = value.strip()
    # ``redact`` keeps exactly the visible prefix of a key, followed by an ellipsis.
    return redact(value).removesuffix("…") if looks_like_key(value) else value


async def revoke_key(
    session: AsyncSession, *, prefix: str, org_id: str | None = None, channel: security.Channel = "cli"
) -> ApiKey:
    """Revoke the key with ``prefix``; revoking twice is an error, not a no-op."""
    wanted = normalise_prefix(prefix)
    query = select(ApiKey).where(ApiKey.prefix == wanted)
    if org_id is not None:
        query = query.where(ApiKey.org_id == org_id)
    key = await session.scalar(query)
    if key is None:
        raise NotFound(f"no key with prefix {wanted!r}")
    if key.revoked_at is not None:
        since = _aware(key.revoked_at).isoformat(timespec="seconds")
        raise Conflict(f"key {key.prefix} is already revoked (since {since})")
    key.revoked_at = utcnow()
    await bump_key(session, key)
    security.record(session, _key_event("key.revoked", key, channel))
    return key


async def get_key(session: AsyncSession, *, org_id: str, prefix: str) -> ApiKey:
    """The org's key with ``prefix`` (or the whole key pasted), or NotFound."""
    wanted = normalise_prefix(prefix)
    key = await session.scalar(select(ApiKey).where(ApiKey.prefix == wanted, ApiKey.org_id == org_id))
    if key is None:
        raise NotFound(f"no key with prefix {wanted!r}")
    return key


async def set_key_tools(
    session: AsyncSession,
    *,
    prefix: str,
    org_id: str | None,
    allow: Sequence[tuple[str, str]] | None,
    channel: security.Channel = "cli",
) -> ApiKey:
    """Replace a key's allow-list (None: every tool of its server); its clients are told at once."""
    wanted = normalise_prefix(prefix)
    query = select(ApiKey).where(ApiKey.prefix == wanted)
    if org_id is not None:
        query = query.where(ApiKey.org_id == org_id)
    key = await session.scalar(query)
    if key is None:
        raise NotFound(f"no key with prefix {wanted!r}")
    server = await session.get(Server, key.server_id)
    assert server is not None  # a key's server is deleted with it
    grants = await _grants(session, server=server, allow=allow) if allow is not None else None
    await session.execute(delete(ApiKeyToolPermission).where(ApiKeyToolPermission.api_key_id == key.id))
    for row, access in (grants or {}).values():
        session.add(
            ApiKeyToolPermission(api_key_id=key.id, tool_id=row.tool_id, can_read=True, can_write=access == "rw")
        )
    key.all_tools = grants is None
    await session.flush()
    await bump_key(session, key)
    security.record(session, _key_event("permission.changed", key, channel))
    return key


async def set_key_credentials(
    session: AsyncSession,
    *,
    prefix: str,
    org_id: str,
    credentials: Sequence[tuple[str, str]],
    channel: security.Channel = "cli",
) -> ApiKey:
    """Replace a key's credential choices (empty: the default for every upstream); the next call uses them."""
    key = await get_key(session, org_id=org_id, prefix=prefix)
    server = await session.get(Server, key.server_id)
    assert server is not None  # a key's server is deleted with it
    bindings = await check_bindings(session, server=server, entries=credentials, shared_key=key.shared)
    await bind_credentials(session, key=key, bindings=bindings)
    await bump_key(session, key)
    detail = ", ".join(f"{b.upstream}={b.choice.label}" for b in bindings) or "default"
    security.record(session, _key_event("credential.changed", key, channel, detail=detail))
    return key
